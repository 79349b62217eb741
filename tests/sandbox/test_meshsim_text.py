"""The OpenMetrics text written by sandbox.meshsim for a tiny mesh, read back line by line."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import pytest

from sandbox.meshsim import (
    ISTIO_BUCKETS_MS,
    Caller,
    Latency,
    Phase,
    Service,
    Version,
    demo_mesh,
    kube_service_manifests,
    scaled_mesh,
    write_openmetrics,
)

T0 = 1_700_000_000.0
STEP = 30.0
CHANGE = T0 + 300  # beta loses its traffic, gamma appears
END = T0 + 600

SLOW = Latency.of({100: 0.5, 250: 0.5})
FAST = Latency.of({5: 0.6, 10: 0.3, 25: 0.1})

CLIENT = Caller("client", "c", rps=2.0)  # all mTLS
OUTSIDE = Caller("unknown", "unknown", rps=0.5, mtls_share=0.0)
ALPHA = Service(
    "a",
    "alpha",
    (CLIENT, OUTSIDE),
    (Version("v1", share=0.75, error_rate=0.1, latency=FAST), Version("v2", share=0.25, latency=SLOW)),
)
BETA = Service("b", "beta", (Caller("client", "c", rps=4.0, mtls_share=0.5),))
BETA_IDLE = Service("b", "beta", (Caller("client", "c", rps=0.0, mtls_share=0.5),))
GAMMA = Service("a", "gamma", (Caller("client", "c", rps=1.0),))
PHASES = (Phase(T0, (ALPHA, BETA)), Phase(CHANGE, (ALPHA, BETA_IDLE, GAMMA)))

LINE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+) (?P<ts>\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]
Points = list[tuple[float, float]]


def parse(text: str) -> dict[tuple[str, Labels], Points]:
    series: dict[tuple[str, Labels], Points] = defaultdict(list)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = tuple(sorted(LABEL.findall(match["labels"])))
        series[(match["name"], labels)].append((float(match["ts"]), float(match["value"])))
    return dict(series)


def write(tmp_path: Path, reporters: Sequence[str] = ("destination", "source")) -> tuple[str, int]:
    path = tmp_path / "mesh.om"
    samples = write_openmetrics(path, PHASES, end=END, step=STEP, reporters=reporters)
    return path.read_text(), samples


def requests_series(series: dict[tuple[str, Labels], Points]) -> dict[Labels, Points]:
    return {labels: points for (name, labels), points in series.items() if name == "istio_requests_total"}


def pick(labels: Labels, *keys: str) -> tuple[str, ...]:
    d = dict(labels)
    return tuple(d[k] for k in keys)


KEY = (
    "source_workload",
    "destination_service_name",
    "destination_version",
    "response_code",
    "connection_security_policy",
)


def expected_destination_keys() -> set[tuple[str, ...]]:
    """Every destination combination with a nonzero rate in some phase, from the parameters above."""
    keys = set()
    for svc in (ALPHA, BETA, GAMMA):
        for caller in svc.callers:
            for version in svc.versions:
                codes = {
                    "200": 1 - version.error_rate - version.client_error_rate,
                    "404": version.client_error_rate,
                    "503": version.error_rate,
                }
                policies = {"mutual_tls": caller.mtls_share, "none": 1 - caller.mtls_share}
                for code, cf in codes.items():
                    for policy, pf in policies.items():
                        if caller.rps * version.share * cf * pf > 0:
                            keys.add((caller.workload, svc.name, version.name, code, policy))
    return keys


def test_only_combinations_with_traffic_have_series(tmp_path: Path) -> None:
    text, _ = write(tmp_path)
    series = requests_series(parse(text))
    destination = {pick(labels, *KEY) for labels in series if dict(labels)["reporter"] == "destination"}
    assert destination == expected_destination_keys()
    # spot checks of the traps the set encodes
    assert ("unknown", "alpha", "v1", "200", "mutual_tls") not in destination
    assert ("client", "alpha", "v1", "200", "none") not in destination
    assert not any(key[3] == "404" for key in destination)
    assert ("client", "beta", "v1", "503", "mutual_tls") not in destination


def test_source_reporter_only_for_in_mesh_callers_and_hides_mtls(tmp_path: Path) -> None:
    text, _ = write(tmp_path)
    series = requests_series(parse(text))
    source = [dict(labels) for labels in series if dict(labels)["reporter"] == "source"]
    assert source, "no reporter=source series"
    assert {s["source_workload"] for s in source} == {"client"}
    assert {s["connection_security_policy"] for s in source} == {"unknown"}
    # beta's half-mTLS caller: one merged source series per code, carrying the full rate
    beta = [s for s in source if s["destination_service_name"] == "beta"]
    assert len(beta) == 1
    points = series[tuple(sorted(beta[0].items()))]
    assert dict(points)[CHANGE] == pytest.approx(4.0 * (CHANGE - T0))


def test_destination_only_when_asked(tmp_path: Path) -> None:
    text, samples = write(tmp_path, reporters=("destination",))
    assert 'reporter="source"' not in text
    both_text, both_samples = write(tmp_path, reporters=("destination", "source"))
    assert 'reporter="source"' in both_text
    assert samples < both_samples


def test_counters_grow_at_the_configured_rate(tmp_path: Path) -> None:
    series = requests_series(parse(write(tmp_path)[0]))
    by_key = {pick(labels, "reporter", *KEY): points for labels, points in series.items()}
    grid = [T0 + k * STEP for k in range(int((END - T0) / STEP) + 1)]

    # alpha v1, client, 200: 2 rps × 0.75 × 0.9, both phases
    alpha = by_key[("destination", "client", "alpha", "v1", "200", "mutual_tls")]
    assert [t for t, _ in alpha] == grid
    for t, value in alpha:
        assert value == pytest.approx(2.0 * 0.75 * 0.9 * (t - T0), rel=1e-12, abs=1e-9)

    # beta, mutual_tls half: 2 rps until CHANGE, then flat but still written up to END
    beta = by_key[("destination", "client", "beta", "v1", "200", "mutual_tls")]
    assert [t for t, _ in beta] == grid
    for t, value in beta:
        assert value == pytest.approx(4.0 * 0.5 * (min(t, CHANGE) - T0), rel=1e-12, abs=1e-9)

    # gamma is born at CHANGE with value 0
    gamma = by_key[("destination", "client", "gamma", "v1", "200", "mutual_tls")]
    assert gamma[0] == (CHANGE, 0.0)
    assert [t for t, _ in gamma] == [t for t in grid if t >= CHANGE]
    for t, value in gamma:
        assert value == pytest.approx(1.0 * (t - CHANGE), rel=1e-12, abs=1e-9)


def test_histograms_are_consistent_with_the_counter(tmp_path: Path) -> None:
    parsed = parse(write(tmp_path)[0])
    counters = requests_series(parsed)
    latencies = {(svc.name, v.name): v.latency for svc in (ALPHA, BETA, GAMMA) for v in svc.versions}
    buckets: dict[Labels, dict[float, Points]] = defaultdict(dict)
    for (name, labels), points in parsed.items():
        if name == "istio_request_duration_milliseconds_bucket":
            le = dict(labels)["le"]
            rest = tuple(kv for kv in labels if kv[0] != "le")
            buckets[rest][math.inf if le == "+Inf" else float(le)] = points
    assert set(buckets) == set(counters)
    for labels, by_le in buckets.items():
        assert sorted(by_le) == [*map(float, ISTIO_BUCKETS_MS), math.inf]
        count = dict(parsed[("istio_request_duration_milliseconds_count", labels)])
        total = dict(parsed[("istio_request_duration_milliseconds_sum", labels)])
        counter = dict(counters[labels])
        assert count == counter
        latency = latencies[pick(labels, "destination_service_name", "destination_version")]
        bounds = [0.0, *map(float, ISTIO_BUCKETS_MS)]
        mean = sum(f * (bounds[bounds.index(le) - 1] + le) / 2 for le, f in latency.shares)
        within_10ms = sum(f for le, f in latency.shares if le <= 10)
        for t, n in count.items():
            values = [dict(by_le[le])[t] for le in sorted(by_le)]
            assert values == sorted(values), f"buckets decrease at {t}: {values}"
            assert values[-1] == n
            # _sum = count × share-weighted bucket midpoints; a bucket = count × share at or below it
            assert total[t] == pytest.approx(n * mean, rel=1e-12, abs=1e-9)
            assert dict(by_le[10.0])[t] == pytest.approx(n * within_10ms, rel=1e-12, abs=1e-9)


def test_layout_promtool_expects(tmp_path: Path) -> None:
    text, samples = write(tmp_path)
    lines = text.splitlines()
    assert text.endswith("\n") and lines[-1] == "# EOF"
    assert lines[0] == "# TYPE istio_requests counter"
    histogram_type = lines.index("# TYPE istio_request_duration_milliseconds histogram")
    names = [line.split("{", 1)[0] for line in lines if not line.startswith("#")]
    assert samples == len(names)
    first_histogram = names.index("istio_request_duration_milliseconds_bucket")
    assert set(names[:first_histogram]) == {"istio_requests_total"}
    assert "istio_requests_total" not in names[first_histogram:]
    assert all(line.startswith("#") or not line.startswith("istio_requests_total") for line in lines[histogram_type:])
    for points in parse(text).values():  # each series' samples in time order, one step apart
        times = [t for t, _ in points]
        assert all(b - a == STEP for a, b in pairwise(times))


def test_latency_profiles() -> None:
    latency = Latency.of({25: 0.9, 100: 0.09, 500: 0.01})
    cumulative = latency.cumulative()
    assert [le for le, _ in cumulative] == [*map(float, ISTIO_BUCKETS_MS), math.inf]
    assert dict(cumulative)[10.0] == 0.0
    assert dict(cumulative)[25.0] == pytest.approx(0.9)
    assert dict(cumulative)[250.0] == pytest.approx(0.99)
    assert dict(cumulative)[math.inf] == 1.0
    assert latency.mean_ms == pytest.approx(0.9 * 17.5 + 0.09 * 75 + 0.01 * 375)
    with pytest.raises(ValueError, match="sum to 1"):
        Latency.of({25: 0.5, 100: 0.4})
    with pytest.raises(ValueError, match="not an Istio bucket"):
        Latency.of({7: 1.0})


def test_model_rejects_impossible_callers_and_versions() -> None:
    with pytest.raises(ValueError, match=r"mtls_share=0\.0"):
        Caller("unknown", "unknown", 1.0)
    with pytest.raises(ValueError, match="version shares"):
        Service("a", "b", (CLIENT,), (Version("v1", share=0.5),))
    with pytest.raises(ValueError, match="exceeds 1"):
        Version(error_rate=0.6, client_error_rate=0.6)
    with pytest.raises(ValueError, match="increase"):
        write_openmetrics(Path("/nonexistent/never-written"), PHASES[::-1], end=END, step=STEP)


def test_kube_service_manifests() -> None:
    legacy = Service("legacy", "old", (CLIENT,), migrated=False)
    manifests = kube_service_manifests([ALPHA, legacy])
    assert [m["metadata"]["name"] for m in manifests] == ["alpha", "old"]
    assert all(m["apiVersion"] == "v1" and m["kind"] == "Service" and m["spec"]["ports"] for m in manifests)
    assert manifests[0]["metadata"]["namespace"] == "a"
    assert manifests[0]["metadata"]["labels"] == {"app": "alpha", "migrated": "true"}
    assert "migrated" not in manifests[1]["metadata"]["labels"]


def test_demo_mesh_holds_the_promised_traps() -> None:
    now = 1_800_000_000.0
    phases = demo_mesh(now)
    assert [p.start for p in phases] == [now - 2400, now - 900]
    last = phases[-1].services
    assert 5 <= len({s.namespace for s in last}) <= 8 and 15 <= len(last) <= 25
    assert any(s.callers and all(c.mtls_share == 0 for c in s.callers) for s in last)
    assert any(all(v.error_rate == 1.0 for v in s.versions) for s in last)
    idle = {(s.namespace, s.name) for s in last if sum(c.rps for c in s.callers) == 0}
    earlier = {(s.namespace, s.name): sum(c.rps for c in s.callers) for s in phases[0].services}
    assert idle and all(earlier[key] > 0 for key in idle)
    names = [s.name for s in last]
    assert any(names.count(n) > 1 for n in names)
    assert any(not s.migrated for s in last)
    assert any(c.workload == "unknown" for s in last for c in s.callers)
    assert any(len(s.versions) > 1 for s in last)
    assert len({v.latency for s in last for v in s.versions}) >= 3


def test_scaled_mesh_is_deterministic_and_spread() -> None:
    a = scaled_mesh(200, now=T0, seed=3)
    assert a == scaled_mesh(200, now=T0, seed=3)
    assert a != scaled_mesh(200, now=T0, seed=4)
    (phase,) = a
    assert phase.start == T0 - 1800
    assert len(phase.services) == 200 and all(s.migrated for s in phase.services)
    assert len({(s.namespace, s.name) for s in phase.services}) == 200
    assert len({s.namespace for s in phase.services}) >= 5
    assert len({s.name for s in phase.services}) < 200  # names repeat across namespaces


def test_parts_split_the_samples_by_time(tmp_path: Path) -> None:
    whole = parse(write(tmp_path)[0])
    merged: dict[tuple[str, Labels], Points] = defaultdict(list)
    counts = []
    for index in range(3):
        path = tmp_path / f"part{index}.om"
        counts.append(write_openmetrics(path, PHASES, end=END, step=STEP, part=(index, 3)))
        text = path.read_text()
        assert text.splitlines()[-1] == "# EOF"
        for series, points in parse(text).items():
            merged[series].extend(points)
    assert all(counts) and sum(counts) == sum(len(p) for p in whole.values())
    assert dict(merged) == whole
