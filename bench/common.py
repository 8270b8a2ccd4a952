"""Helpers the benchmarks share: tenant and targets, waiting for jobs, process figures, stats."""

from __future__ import annotations

import math
import os
import platform
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psutil
from sqlalchemy import ARRAY, Uuid, any_, bindparam, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.lifecycle import TERMINAL_STATUSES
from app.db.models import Certification
from app.db.session import make_engine, make_session_factory, transaction
from app.schemas.resources import Capabilities, RateLimit, TargetCreate
from app.services.auth import Principal, create_token
from app.services.targets import create_target
from bench.stack import Proc


@dataclass
class Tenant:
    factory: sessionmaker[Session]
    token: str
    who: Principal

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def target(
        self,
        base_url: str,
        *,
        max_concurrency: int | None = None,
        rps: float | None = None,
        streaming: bool = True,
    ) -> uuid.UUID:
        """`streaming`: whether the target declares it (the latency check then streams)."""
        body = TargetCreate(
            name=f"bench-{uuid.uuid4().hex[:8]}",
            model="reference-model",
            base_url=base_url,
            rate_limit=RateLimit(rps=rps, max_concurrency=max_concurrency),
            capabilities=Capabilities(streaming=streaming),
        )
        with transaction(self.factory) as session:
            return create_target(session, self.who, body, allow_private=True).id


def tenant(settings: Settings) -> Tenant:
    factory = make_session_factory(
        make_engine(str(settings.database_url), pool_size=2, application_name="modelcert-bench")
    )
    with transaction(factory) as session:
        token, who = create_token(session, f"bench-{uuid.uuid4().hex[:8]}")
    return Tenant(factory, token, who)


def wait_terminal(factory: sessionmaker[Session], ids: Sequence[uuid.UUID], timeout: float) -> int:
    """Poll until every job is terminal (or the timeout); returns how many are.

    The poll runs on the machine it measures: the ids go as one array parameter (not a bind
    per id) and it looks twice a second. The benchmarks time jobs by their own timestamps
    (finished_at), never by when this noticed them."""
    deadline = time.monotonic() + timeout
    done = 0
    terminal = (
        select(func.count())
        .select_from(Certification)
        .where(
            Certification.id == any_(bindparam("ids", type_=ARRAY(Uuid))),
            Certification.status.in_(TERMINAL_STATUSES),
        )
    )
    while time.monotonic() < deadline:
        with factory() as session:
            done = session.scalar(terminal, {"ids": list(ids)}) or 0
        if done >= len(ids):
            return done
        time.sleep(0.5)
    return done


def job_rows(factory: sessionmaker[Session], ids: Iterable[uuid.UUID]) -> list[Certification]:
    with factory() as session:
        return list(session.scalars(select(Certification).where(Certification.id.in_(list(ids)))))


def xact_counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    """(commits, rollbacks) of this database, from fresh statistics."""
    with factory() as session:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = session.execute(
            text(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
    return int(row[0]), int(row[1])


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def tree_cpu_seconds(proc: Proc) -> float:
    """user+system CPU of a process tree, children that exited since included (a Celery pool
    recycles its children; their time moves to the parent's children_* once reaped)."""
    tree = proc.tree()
    if not tree:
        return 0.0
    try:
        times = tree[0].cpu_times()
        reaped = times.children_user + times.children_system
    except psutil.Error:
        reaped = 0.0
    return cpu_seconds(tree) + reaped


def backend_cpu_seconds(factory: sessionmaker[Session]) -> float:
    """CPU of the Postgres backends connected to this database now (pooled connections of
    the API and the worker live through a run; needs the server on this machine)."""
    with factory() as session:
        pids = list(
            session.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        )
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return cpu_seconds(procs)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def memory_mb(proc: Proc) -> dict[str, float | int | None]:
    """RSS and PSS (when readable) of a process tree, in MB."""
    rss = pss = 0.0
    has_pss = True
    tree = proc.tree()
    for p in tree:
        try:
            info = p.memory_full_info()
            rss += info.rss
            if getattr(info, "pss", None) is None:
                has_pss = False
            else:
                pss += info.pss
        except psutil.AccessDenied:
            has_pss = False
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        except psutil.Error:
            pass
    return {
        "rss_mb": round(rss / 2**20, 1),
        "pss_mb": round(pss / 2**20, 1) if has_pss else None,
        "processes": len(tree),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def machine() -> dict[str, object]:
    mem = psutil.virtual_memory()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpus_logical": psutil.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(mem.total / 2**30, 1),
        "loadavg_at_start": os.getloadavg(),
        "note": "shared machine: other engineers' tests may run at the same time",
    }


def load_now() -> float:
    return round(os.getloadavg()[0], 2)


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return round(ours / baseline, 3)


def cpu_clock() -> tuple[float, float]:
    """(steal, all) CPU seconds of the machine since boot, over every core. Steal is the time a
    core of this virtual machine had work to run while its host ran something else."""
    times = psutil.cpu_times()
    return getattr(times, "steal", 0.0), sum(times)


def steal_pct(since: tuple[float, float]) -> float | None:
    """The share of the machine's CPU time its host took since `since` (`cpu_clock()`), in
    per cent; None over too short a stretch to tell."""
    steal0, all0 = since
    steal1, all1 = cpu_clock()
    return round((steal1 - steal0) / (all1 - all0) * 100, 1) if all1 - all0 >= 0.1 else None


# Rounds of a full run (api_create, e2e_throughput, dispatch_latency, the concurrency runs).
# On this shared host a round lands in a neighbour's busy minute now and then (api_create at
# 22:00 on 2026-12-01: our rounds 459, 207 and 431 req/s); each side's best of three is less
# often one of those than its best of two.
FULL_ROUNDS = 3


def best_of(
    rounds: Sequence[dict],
    score: Callable[[dict], float | None],  # type: ignore[type-arg]
    lower_is_better: bool = False,
) -> dict:  # type: ignore[type-arg]
    """The round with the best score; a round without a figure is never the best (the first
    round when none has one)."""
    scored = [(s, r) for r in rounds if (s := score(r)) is not None]
    if not scored:
        return rounds[0]
    pick = min if lower_is_better else max
    return pick(scored, key=lambda pair: pair[0])[1]


@dataclass
class Interleaved:
    """Rounds of baseline then ours, and each side's best: on a shared host one round of
    either side can land in a neighbour's busy minute. Each round's steal (`steal_pct`) is
    kept, so a figure can be read against what the host took meanwhile."""

    baseline: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    ours: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    loads: list[float] = field(default_factory=list)
    steal: dict[str, list[float | None]] = field(
        default_factory=lambda: {"baseline": [], "ours": []}
    )

    @classmethod
    def run(
        cls,
        rounds: int,
        baseline: Callable[[], dict],
        ours: Callable[[], dict],  # type: ignore[type-arg]
        score: Callable[[dict], float | None],  # type: ignore[type-arg]
        lower_is_better: bool = False,
    ) -> tuple[Interleaved, dict, dict]:  # type: ignore[type-arg]
        """(the runs, the baseline's best, ours' best) by `score`."""
        runs = cls(loads=[load_now()])
        for _ in range(rounds):
            for side, measure in (("baseline", baseline), ("ours", ours)):
                since = cpu_clock()
                getattr(runs, side).append(measure())
                runs.steal[side].append(steal_pct(since))
            runs.loads.append(load_now())
        return (
            runs,
            best_of(runs.baseline, score, lower_is_better),
            best_of(runs.ours, score, lower_is_better),
        )

    def paired_ratios(self, score: Callable[[dict], float | None]) -> list[float | None]:  # type: ignore[type-arg]
        """Each round's ours ÷ the baseline just before it (reported beside the best's)."""
        return [ratio(score(o), score(b)) for b, o in zip(self.baseline, self.ours, strict=True)]
