"""`exporter rollout`: flags to a Plan, the real clients, signals, the JSON summary and the exit code of the outcome.

Exit codes: 0 promoted (or dry run done); 1 rolled back or stopped because of an error (an upstream failed,
a concurrent edit, a crash) or a signal (SIGTERM or SIGINT); 2 bad usage; 3 rolled back because the canary
failed its analysis. Whatever the ending, `--output json` prints the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from types import FrameType
from typing import TYPE_CHECKING, Any

from exporter.canary import service
from exporter.canary.measure import run_analysis
from exporter.cli import clients
from exporter.cli.canary import add_analysis_flags, thresholds_from
from exporter.cli.common import duration_flag
from exporter.errors import ConfigError
from exporter.model import ServiceRef
from exporter.selectors import dns_subdomain

if TYPE_CHECKING:  # the engine and the Kubernetes client load when a rollout runs (start-up time)
    from exporter.canary.analysis import Verdict
    from exporter.config import Settings
    from exporter.rollout.engine import Analyzer, Rollout, SignalWaiter
    from exporter.rollout.plan import Plan, Targets

EXIT_PROMOTED, EXIT_ERROR, EXIT_ANALYSIS = 0, 1, 3

_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+\-.^_`|~]+$")


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            "--steps", f"expected comma-separated percentages, e.g. 5,10,25,50,100; got {text!r}"
        ) from None
    if any(not 0 < s <= 100 for s in steps) or any(b <= a for a, b in pairwise(steps)):
        raise ConfigError("--steps", f"percentages must increase within 1..100, got {text!r}")
    if steps[-1] != 100:
        raise ConfigError("--steps", "the last step must be 100 (promotion)")
    return steps


def parse_header(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    name, _, value = text.partition("=")
    if not _HEADER_NAME.match(name):
        raise ConfigError("--header", f"not a lower-case HTTP header name: {name!r} (Istio matches lower case)")
    return name, value or "true"


def check_names(args: argparse.Namespace) -> None:
    """--namespace, --service, --virtual-service [NS/]NAME, --destination-rule and the Deployments' flags are
    Kubernetes names: a bad one is bad usage, not an object "not found"."""
    vs_namespace, slash, vs_name = (args.virtual_service or "").rpartition("/")
    if slash and (not vs_name or "/" in vs_namespace):
        raise ConfigError("--virtual-service", f"expected NAME or NAMESPACE/NAME, got {args.virtual_service!r}")
    try:
        service.check_name("namespace", args.namespace)
        service.check_name("service", args.service, service=True)
        if slash:
            service.check_name("virtual-service", vs_namespace)
    except service.InvalidRequest as e:
        raise ConfigError(f"--{e.field}", e.message) from None
    for flag, name in (
        ("--virtual-service", vs_name),
        ("--destination-rule", args.destination_rule),
        ("--stable-deployment", args.stable_deployment),
        ("--canary-deployment", args.canary_deployment),
    ):
        if name and not dns_subdomain(name):
            raise ConfigError(flag, f"not a Kubernetes object name (lower-case DNS subdomain, at most 253): {name!r}")


def plan_from(args: argparse.Namespace, settings: Settings) -> Plan:
    from exporter.rollout.plan import Plan
    from exporter.sink.datadog import global_tags

    check_names(args)
    interval = duration_flag("--step-interval", args.step_interval)
    ready_timeout = duration_flag("--ready-timeout", args.ready_timeout, allow_zero=True)
    window = args.window or args.step_interval
    duration_flag("--window", window)
    if args.failure_limit < 1:
        raise ConfigError("--failure-limit", "must be >= 1")
    if args.hold_limit < 0:
        raise ConfigError("--hold-limit", "must be >= 0")
    if not args.canary_image.strip():
        raise ConfigError("--canary-image", "must not be empty")
    analysis_timeout = 0.0
    if args.analysis_timeout is not None:
        analysis_timeout = duration_flag("--analysis-timeout", args.analysis_timeout)
        if analysis_timeout >= interval:
            raise ConfigError("--analysis-timeout", f"must be shorter than --step-interval ({args.step_interval})")
    gateways = tuple(g.strip() for g in (args.header_gateways or "").split(",") if g.strip())
    if args.header_gateways is not None and not gateways:
        raise ConfigError("--header-gateways", "name at least one gateway, e.g. mesh or istio-system/internal")
    if gateways and args.header is None:
        raise ConfigError("--header-gateways", "only applies with --header")
    return Plan(
        service=ServiceRef(args.namespace, args.service),
        image=args.canary_image,
        steps=parse_steps(args.steps),
        interval_s=interval,
        window=window,
        failure_limit=args.failure_limit,
        hold_limit=args.hold_limit,
        header=parse_header(args.header),
        header_gateways=gateways,
        cluster_domain=args.cluster_domain.strip(".").lower() or "cluster.local",
        analysis_timeout_s=analysis_timeout,
        virtual_service=args.virtual_service or "",
        destination_rule=args.destination_rule or "",
        stable_subset=args.stable_subset,
        canary_subset=args.canary_subset,
        subset_label=args.subset_label,
        stable_deployment=args.stable_deployment or "",
        canary_deployment=args.canary_deployment or "",
        container=args.container or "",
        version_label=args.version_label,
        thresholds=thresholds_from(args),
        on_error=args.on_error,
        on_sigterm=args.on_sigterm,
        istio_root_namespace=settings.istio_root_namespace,
        tags=global_tags(settings),
        ready_timeout_s=ready_timeout,
    )


def analyzer_for(plan: Plan, settings: Settings, waiter: SignalWaiter | None = None) -> Analyzer:
    """The analysis through a Prometheus client bounded by the analysis deadline: each query times out by
    then, and no retry starts after a stop, so an abandoned analysis ends within one query timeout."""
    from exporter.retry import RetryPolicy
    from exporter.rollout.engine import Stopped

    def sleep(seconds: float) -> None:
        if waiter is not None and waiter.wait(seconds):
            raise Stopped

    # whole seconds: Prometheus's `timeout` parameter takes no fractions
    timeout = float(max(1, math.ceil(plan.analysis_deadline_s)))
    prom = clients.prometheus(settings, timeout=timeout, retry=RetryPolicy(sleep=sleep))

    def analyze(at: float, targets: Targets) -> Verdict:
        return run_analysis(
            prom,
            plan.service,
            canary=targets.canary_version,
            stable=targets.stable_version,
            at=at,
            window=plan.window,
            label=plan.version_label,
            thresholds=plan.thresholds,
        )

    return analyze


@contextmanager
def stop_on_signals(waiter: SignalWaiter) -> Iterator[None]:
    """SIGTERM and SIGINT set the waiter's flag; the rollout abandons whatever it waits for and rolls back."""

    def handler(signum: int, frame: FrameType | None) -> None:
        waiter.request_stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def exit_code(rollout: Rollout, *, failed: bool) -> int:
    """0 promoted, 3 rolled back because the canary failed its analysis, 1 any other ending."""
    from exporter.rollout.engine import ANALYSIS, PROMOTED

    if failed:
        return EXIT_ERROR
    if rollout.outcome == PROMOTED:
        return EXIT_PROMOTED
    return EXIT_ANALYSIS if rollout.cause == ANALYSIS else EXIT_ERROR


def cmd_rollout(args: argparse.Namespace, settings: Settings) -> int:
    from exporter.kube.istio import Kube
    from exporter.rollout.engine import Rollout, SignalWaiter

    plan = plan_from(args, settings)
    has_key = settings.dd_api_key is not None and bool(settings.dd_api_key.get_secret_value())
    events = clients.datadog(settings) if has_key and not args.dry_run else None
    waiter = SignalWaiter()
    kube = Kube(clients.kubernetes(settings))
    as_json = args.output == "json"
    out = sys.stderr if as_json else sys.stdout  # dry-run patches; stdout carries only the JSON summary then
    rollout = Rollout(
        plan, kube, analyzer_for(plan, settings, waiter), waiter=waiter, events=events, dry_run=args.dry_run, out=out
    )
    error: Exception | None = None
    with stop_on_signals(waiter):
        try:
            rollout.run()
        except Exception as e:  # a crash too: the rollout rolled back; CI still gets its summary
            error = e
    code = exit_code(rollout, failed=error is not None)
    if as_json:
        print(json.dumps({**rollout.summary(), "exit_code": code}, indent=2))
    if error is not None:
        raise error  # reported by exporter.cli.main in one line as every command's errors are (exit 1)
    why = f" ({rollout.cause}: {rollout.reason})" if rollout.cause else ""
    print(
        f"rollout of {plan.image} to {plan.service}: {rollout.outcome}{why}" + (" (dry run)" if args.dry_run else ""),
        file=sys.stderr,
    )
    return code


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rollout",
        help="progressive canary rollout with Istio traffic splitting, analysis and rollback",
        description="Set the canary Deployment's image, then shift traffic step by step through the service's "
        "VirtualService, judging the canary after every step; roll back on failure, error, SIGTERM or SIGINT; "
        "promote at "
        "100 %. Exit 0 promoted (or dry run done), 1 rolled back or stopped because of an error or a signal, "
        "2 bad flags, 3 rolled back because the canary failed its analysis.",
    )
    p.add_argument("--namespace", required=True)
    p.add_argument("--service", required=True)
    p.add_argument("--canary-image", required=True, metavar="IMAGE")
    p.add_argument(
        "--steps", default="5,10,25,50,100", help="canary weights in %%, ending at 100 (default %(default)s)"
    )
    p.add_argument(
        "--step-interval", default="5m", metavar="DURATION", help="wait before each analysis (default %(default)s)"
    )
    p.add_argument("--window", metavar="DURATION", help="analysis window (default: the step interval)")
    p.add_argument(
        "--failure-limit",
        type=int,
        default=2,
        metavar="N",
        help="failed analyses in a row that roll back (default %(default)s)",
    )
    p.add_argument(
        "--hold-limit",
        type=int,
        default=3,
        metavar="N",
        help="inconclusive analyses a step may hold for (default %(default)s)",
    )
    p.add_argument(
        "--header",
        metavar="NAME[=VALUE]",
        help="requests with this header (value default true) always go to the canary",
    )
    p.add_argument(
        "--header-gateways",
        metavar="GW[,GW…]",
        help="gateways the header route applies to (default: in-mesh traffic only when the VirtualService is "
        "bound to gateways; never a public gateway unless named here)",
    )
    p.add_argument(
        "--analysis-timeout",
        metavar="DURATION",
        help="deadline of one analysis, shorter than --step-interval (default: half of it, at most 1m)",
    )
    p.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="json: a summary of every step on stdout, for CI (default %(default)s)",
    )
    p.add_argument("--dry-run", action="store_true", help="print every patch it would send; change nothing")
    p.add_argument(
        "--virtual-service",
        metavar="[NAMESPACE/]NAME",
        help="default: the service name; in the service's namespace unless NAMESPACE/ is given",
    )
    p.add_argument("--destination-rule", metavar="NAME", help="default: the service name")
    p.add_argument(
        "--stable-subset", default="stable", metavar="NAME", help="DestinationRule subset (default %(default)s)"
    )
    p.add_argument(
        "--canary-subset", default="canary", metavar="NAME", help="DestinationRule subset (default %(default)s)"
    )
    p.add_argument(
        "--subset-label",
        default="version",
        metavar="LABEL",
        help="pod label the subsets select on; its values are destination_version's (default %(default)s)",
    )
    p.add_argument("--stable-deployment", metavar="NAME", help="default: SERVICE-<stable subset's label value>")
    p.add_argument("--canary-deployment", metavar="NAME", help="default: SERVICE-<canary subset's label value>")
    p.add_argument(
        "--cluster-domain",
        default="cluster.local",
        metavar="DOMAIN",
        help="DNS domain that completes short hosts, as Istio does (default %(default)s)",
    )
    p.add_argument("--container", metavar="NAME", help="container to update (default: the only one, or SERVICE)")
    p.add_argument(
        "--ready-timeout",
        default="10m",
        metavar="DURATION",
        help="how long a Deployment may take to roll out a new image; 0s skips the wait (default %(default)s)",
    )
    p.add_argument("--on-error", choices=("rollback", "leave"), default="rollback", help="default %(default)s")
    p.add_argument(
        "--on-sigterm",
        choices=("rollback", "leave"),
        default="rollback",
        help="leave: stop and resume on the next run (default %(default)s)",
    )
    add_analysis_flags(p)
    p.set_defaults(func=cmd_rollout)
