"""mesh-exporter: Istio service figures from Prometheus to Datadog.

The first module the program runs (both `exporter` and `python -m exporter` import this package before
anything else) installs the SIGINT handler: from here on, whether the program is loading or a command
is waiting on an upstream, SIGINT is one line and exit 130 at once, never a traceback and never a wait
for a worker thread stuck in a request. `run` and `rollout` replace it with their own graceful stop.
Only the interpreter's own start-up before this (20 ms, more on a loaded machine) is outside it.
"""

import os
import signal
import sys

__version__ = "0.1.0"


def interrupted(signum: int, frame: object) -> None:
    """SIGINT: one line and the shell's 130, at once."""
    os.write(2, b"exporter: interrupted\n")
    os._exit(130)


def _is_the_program() -> bool:
    """True in the exporter process itself, False when a test or a tool imports the package."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    by_module = "-m" in argv[:-1] and argv[argv.index("-m") + 1] == "exporter"
    return by_module or os.path.basename(sys.argv[0]) == "exporter"


if _is_the_program():
    signal.signal(signal.SIGINT, interrupted)
