"""What every command shares: exit codes, the time and duration flag parsers, number cells and the table formatter."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NoReturn, TextIO

from exporter import durations
from exporter.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # SIGINT, as shells report it
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: later instants are typos


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line naming the flag (`exporter once: argument --at: ...`), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message.splitlines()[0] if message else 'bad usage'} (see --help)\n")


_COLOURS = {"red": "\033[31m", "yellow": "\033[33m"}


def parse_time(text: str) -> int:
    """RFC 3339 or unix seconds (1970 to 9999) → whole unix seconds (argparse type)."""
    example = "(e.g. 2026-11-26T06:00:00Z or 1795500000)"
    try:
        seconds = float(text)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not RFC 3339 or unix seconds: {text!r} {example}") from None
        if parsed.tzinfo is None:
            raise argparse.ArgumentTypeError(f"RFC 3339 time needs an offset or Z: {text!r}") from None
        seconds = parsed.timestamp()
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_TIME):
        raise argparse.ArgumentTypeError(f"not a time between 1970 and 9999: {text!r} {example}")
    return math.floor(seconds)


def duration_flag(flag: str, text: str, *, allow_zero: bool = False) -> float:
    """A PromQL duration flag (`5m`, `7d`) in seconds, bounded like every duration (exporter.durations);
    ConfigError naming the flag when it is not one."""
    try:
        return durations.bounded(text, allow_zero=allow_zero)
    except ValueError as e:
        raise ConfigError(flag, str(e)) from None


def number(value: float | None, digits: int) -> str:
    """A table cell: thousands separators, fixed digits, — for no data."""
    return "—" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def colour_for(stream: TextIO) -> bool:
    """Colours on a terminal only, and never when NO_COLOR is set to a non-empty value (no-color.org) or
    TERM is dumb."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def table(
    rows: Sequence[Sequence[str]],
    *,
    left: set[int],
    marks: Mapping[tuple[int, int], str] | None = None,
    colour: bool = False,
) -> list[str]:
    """Aligned columns (the `left` ones left-aligned, the rest right-aligned), two spaces apart.

    `marks` colours cells by (row, column) when `colour` is on; widths ignore the colour codes.
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            text = cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
            mark = (marks or {}).get((r, i))
            if colour and mark:
                text = f"{_COLOURS[mark]}{text}\033[0m"
            cells.append(text)
        out.append("  ".join(cells).rstrip())
    return out
