"""The backlog of unsent points: age and count bounds, oldest first, the spool on disk."""

import json
from pathlib import Path

from structlog.testing import capture_logs

from exporter.sink.backlog import Backlog, Spool
from exporter.sink.datadog import Point

NOW = 1_800_000_000


def pts(*timestamps: int, metric: str = "m") -> list[Point]:
    return [Point(metric, float(t % 97), t, (f"service:s{t}", "kube_namespace:n")) for t in timestamps]


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def test_points_come_back_oldest_first_and_the_backlog_empties() -> None:
    b = Backlog(clock=Clock())
    b.add(pts(NOW - 10, NOW - 30))
    b.add(pts(NOW - 20))
    assert [p.timestamp for p in b.take()] == [NOW - 30, NOW - 20, NOW - 10]
    assert len(b) == 0 and b.take() == []


def test_points_older_than_an_hour_are_dropped_counted_and_logged() -> None:
    clock, dropped = Clock(), []
    b = Backlog(clock=clock, on_drop=lambda reason, n: dropped.append((reason, n)))
    b.add(pts(NOW - 3000, NOW - 100))
    clock.now += 700  # the first point is now 3700 s old: Datadog would ignore it
    with capture_logs() as logs:
        assert [p.timestamp for p in b.take()] == [NOW - 100]
    assert dropped == [("older_than_datadog_accepts", 1)]
    assert logs[0]["event"] == "dropping unsent points" and logs[0]["oldest"] == NOW - 3000


def test_count_bound_drops_the_oldest_first() -> None:
    dropped: list[tuple[str, int]] = []
    b = Backlog(max_points=3, clock=Clock(), on_drop=lambda reason, n: dropped.append((reason, n)))
    b.add(pts(NOW - 5, NOW - 4, NOW - 3, NOW - 2, NOW - 1))
    assert [p.timestamp for p in b.take()] == [NOW - 3, NOW - 2, NOW - 1]
    assert dropped == [("backlog_full", 2)]


def test_spool_survives_a_restart_and_is_removed_when_empty(tmp_path: Path) -> None:
    first = Backlog(clock=Clock(), spool=Spool(tmp_path))
    first.add(pts(NOW - 60, NOW - 30))
    assert (tmp_path / "backlog.json").exists()
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left behind
    second = Backlog(clock=Clock(), spool=Spool(tmp_path))  # a new process
    taken = second.take()
    assert taken == pts(NOW - 60, NOW - 30)
    second.settle(taken, [])  # everything was sent
    assert not (tmp_path / "backlog.json").exists()


def test_points_in_flight_stay_in_the_spool_until_settled(tmp_path: Path) -> None:
    spooled = lambda: sorted(p[2] for p in json.loads((tmp_path / "backlog.json").read_text())["points"])  # noqa: E731
    b = Backlog(clock=Clock(), spool=Spool(tmp_path))
    b.add(pts(NOW - 60, NOW - 30))
    taken = b.take()  # a delivery round is under way
    b.add(pts(NOW - 10))  # the next cycle's points arrive meanwhile and the spool is rewritten
    assert len(b) == 1 and spooled() == [NOW - 60, NOW - 30, NOW - 10]
    # SIGKILL here: a new process finds every point, the ones in flight included
    assert [p.timestamp for p in Backlog(clock=Clock(), spool=Spool(tmp_path)).take()] == [NOW - 60, NOW - 30, NOW - 10]
    b.settle(taken, taken[1:])  # Datadog accepted the first one only
    assert spooled() == [NOW - 30, NOW - 10] and [p.timestamp for p in b.take()] == [NOW - 30, NOW - 10]


def test_spooled_points_too_old_at_restart_are_dropped(tmp_path: Path) -> None:
    Backlog(clock=Clock(), spool=Spool(tmp_path)).add(pts(NOW - 3500))
    later, dropped = Clock(), []
    later.now += 200
    restored = Backlog(clock=later, spool=Spool(tmp_path), on_drop=lambda r, n: dropped.append((r, n)))
    assert restored.take() == [] and dropped == [("older_than_datadog_accepts", 1)]


def test_a_corrupt_spool_is_set_aside_never_a_crash(tmp_path: Path) -> None:
    (tmp_path / "backlog.json").write_text('{"format": 1, "points": [["m", "not a number"')
    with capture_logs() as logs:
        b = Backlog(clock=Clock(), spool=Spool(tmp_path))
    assert len(b) == 0
    aside = list(tmp_path.glob("backlog.json.corrupt-*"))
    assert len(aside) == 1 and not (tmp_path / "backlog.json").exists()
    assert logs[0]["event"] == "spool file unreadable; set aside"


def test_spool_holds_points_only(tmp_path: Path) -> None:
    Backlog(clock=Clock(), spool=Spool(tmp_path)).add(pts(NOW - 1))
    doc = json.loads((tmp_path / "backlog.json").read_text())
    assert set(doc) == {"format", "points"}
    assert doc["points"] == [["m", float((NOW - 1) % 97), NOW - 1, [f"service:s{NOW - 1}", "kube_namespace:n"]]]
