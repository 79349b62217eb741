"""Benchmark meshes: `scaled_mesh` trimmed to the data a cycle reads, backfilled once and cached.

A cycle evaluates 5-minute rates at one instant, so only the rate window and a margin are generated
(SPAN seconds before END at STEP, destination reporter only: the exporter never reads the source
copies). The TSDB is cached under bench/out/ keyed by every parameter and by the generator's source,
so a changed generator never serves stale data.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from exporter.model import ServiceRef
from sandbox import meshsim, prom
from sandbox.meshsim import Phase, Service, scaled_mesh

OUT = Path(__file__).resolve().parent / "out"
END = 1_795_000_020  # fixed evaluation instant (a multiple of STEP), so the cache stays valid
STEP = 30.0  # a common Istio scrape interval
SPAN = 360.0  # 6 minutes: the 5-minute rate window plus two steps
WINDOW = "5m"
SEED = 7
REPORTERS = ("destination",)
JOBS = 1  # one TSDB block: a query over two adjacent blocks merges every series twice


@dataclass(frozen=True)
class Mesh:
    services: tuple[Service, ...]
    tsdb: Path
    samples: int
    build_seconds: float  # 0.0 when the cached TSDB was used

    @property
    def refs(self) -> list[ServiceRef]:
        return sorted(ServiceRef(s.namespace, s.name) for s in self.services)


def cache_key(n_services: int, *, end: float = END, step: float = STEP, span: float = SPAN, seed: int = SEED) -> str:
    """A short digest of everything the generated data depends on."""
    source = inspect.getsource(meshsim) + inspect.getsource(prom)
    text = json.dumps([n_services, end, step, span, seed, REPORTERS, JOBS, source])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def phases(n_services: int, *, end: float = END, span: float = SPAN, seed: int = SEED) -> tuple[Phase, ...]:
    """scaled_mesh's services in a single phase starting `span` seconds before `end`."""
    (phase,) = scaled_mesh(n_services, now=end, seed=seed)
    return (Phase(end - span, phase.services),)


def build(n_services: int, *, out: Path = OUT, log: bool = True) -> Mesh:
    """The cached TSDB for `n_services`, built first when missing."""
    mesh_phases = phases(n_services)
    tsdb = out / f"tsdb-{n_services}-{cache_key(n_services)}"
    done = tsdb.parent / f"{tsdb.name}.json"
    if done.exists():
        samples = int(json.loads(done.read_text())["samples"])
        return Mesh(mesh_phases[0].services, tsdb, samples, 0.0)
    for stale in out.glob(f"tsdb-{n_services}-*"):  # an older generator's data, or an interrupted build
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink()
    shm = Path("/dev/shm")
    scratch = shm if shm.is_dir() else None
    if log:
        print(f"bench: generating {n_services} services into {tsdb.name} ...", flush=True)
    started = time.perf_counter()
    samples = prom.build_tsdb(
        mesh_phases, tsdb, end=END, step=STEP, reporters=REPORTERS, scratch_dir=scratch, jobs=JOBS
    )
    seconds = time.perf_counter() - started
    done.write_text(json.dumps({"samples": samples, "seconds": seconds}))
    if log:
        print(f"bench: {samples:,} samples in {seconds:.1f}s", flush=True)
    return Mesh(mesh_phases[0].services, tsdb, samples, seconds)
