"""e2e_throughput, dispatch_latency and memory: jobs through the API and real workers,
against a bare Celery no-op task (bench/baseline_celery.py) on the same Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid

import aiohttp
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Certification
from bench import baseline_celery
from bench.api import parse_wrk, wrk_available
from bench.common import (
    FULL_ROUNDS,
    Interleaved,
    Tenant,
    backend_cpu_seconds,
    job_rows,
    machine_busy_seconds,
    memory_mb,
    percentile,
    ratio,
    tenant,
    tree_cpu_seconds,
    wait_terminal,
    xact_counts,
)
from bench.stack import Bench, Proc

WORKERS = 2  # pool processes of one worker node, for ours and for the baseline


async def post_jobs(
    api: str,
    t: Tenant,
    target_id: uuid.UUID,
    n: int,
    *,
    rate: float | None = None,
    clients: int = 8,
) -> list[tuple[uuid.UUID, float]]:
    """POST n certifications; as fast as `clients` connections go, or open-loop at `rate`/s.
    Returns (id, time.time() when the 202 came back)."""
    body = {"target_id": str(target_id), "suite": "bench-trivial"}
    out: list[tuple[uuid.UUID, float]] = []
    limit = asyncio.Semaphore(clients)
    connector = aiohttp.TCPConnector(limit=clients if rate is None else 64)
    async with aiohttp.ClientSession(connector=connector, headers=t.headers) as session:
        started = time.perf_counter()

        async def one(i: int) -> None:
            if rate is not None:
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            async with limit if rate is None else _null():
                async with session.post(f"{api}/v1/certifications", json=body) as r:
                    data = await r.json()
                    if r.status != 202:
                        raise RuntimeError(f"POST answered {r.status}: {data}")
            out.append((uuid.UUID(data["id"]), time.time()))

        await asyncio.gather(*(one(i) for i in range(n)))
    return out


class _null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *_: object) -> None:
        return None


def publish_noops(
    settings: Settings, queue: str, run: str, n: int, rate: float | None = None
) -> float:
    """apply_async n no-ops (by name, like our API); returns the time.time() of the first."""
    app = baseline_celery.make_app(settings)
    first = time.time()
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            if rate is not None:
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
            app.send_task(
                baseline_celery.NOOP,
                args=[run],
                kwargs={"sent_at": time.time()},
                queue=queue,
                producer=producer,
            )
    return first


def wait_noops(client: redis.Redis, run: str, n: int, timeout: float) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and client.llen(f"bench-baseline:{run}") < n:
        time.sleep(0.05)
    return baseline_celery.results(client, run)


def start_baseline_worker(bench: Bench, settings: Settings, queue: str) -> Proc:
    proc = bench.start_module("bench.baseline_celery", [queue], settings, "baseline-celery")
    client = redis.Redis.from_url(str(settings.redis_url))
    app = baseline_celery.make_app(settings)
    run = f"warm-{uuid.uuid4().hex[:6]}"  # wait until it consumes (and warm its children)
    app.send_task(baseline_celery.NOOP, args=[run], queue=queue)
    if not wait_noops(client, run, 1, 90):
        raise RuntimeError(f"baseline worker did not start: {proc.log.read_text()[-2000:]}")
    return proc


# e2e's POSTs come from wrk (C, one thread, `clients` keep-alive connections), like
# api_create's: a Python client would spend about 3 ms of CPU per POST on this 2-core machine,
# CPU the API and the worker then lack. wrk's one thread stops after `n` responses in all.
COUNTED_LUA = """
local done = 0
request = function()
  local headers = {}
  headers["Authorization"] = "Bearer %(token)s"
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/v1/certifications", headers, '%(body)s')
end
response = function(status, headers, body)
  done = done + 1
  if done >= %(n)d then wrk.thread:stop() end
end
"""


def post_with_wrk(
    bench: Bench, wrk: str, api: str, t: Tenant, target_id: uuid.UUID, n: int, clients: int = 8
) -> list[uuid.UUID]:
    """POST at least n certifications for target_id (up to clients - 1 more are in flight when
    wrk stops); returns the ids of every job of that target."""
    script = bench.workdir / f"e2e-{uuid.uuid4().hex[:6]}.lua"
    body = json.dumps({"target_id": str(target_id), "suite": "bench-trivial"})
    script.write_text(COUNTED_LUA % {"token": t.token, "body": body, "n": n})
    # wrk runs for its whole -d even when its thread stopped: interrupt it once n are in.
    proc = subprocess.Popen(
        [wrk, "-t1", f"-c{clients}", "-d600s", "-s", str(script), f"{api}/v1/certifications"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while proc.poll() is None and count_jobs(t.factory, target_id) < n:
            time.sleep(0.1)  # a count on the machine measured: not more often
        time.sleep(0.2)  # the last few in flight
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = parse_wrk(out)
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"wrk saw errors while posting: {out[-1500:]}")
    with t.factory() as session:
        return list(
            session.scalars(select(Certification.id).where(Certification.target_id == target_id))
        )


def count_jobs(factory: sessionmaker[Session], target_id: uuid.UUID) -> int:
    with factory() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Certification)
                .where(Certification.target_id == target_id)
            )
            or 0
        )


def warm_ours(api: str, t: Tenant, target_id: uuid.UUID, n: int = 4) -> None:
    ids = [i for i, _ in asyncio.run(post_jobs(api, t, target_id, n))]
    wait_terminal(t.factory, ids, 120)


def cpu_split(bench: Bench, t: Tenant, api: Proc, worker: Proc) -> dict[str, float]:
    """CPU seconds so far: our API and worker trees, the reference endpoint, this database's
    Postgres backends, and the whole machine (Redis, wrk, others' work included)."""
    return {
        "api": tree_cpu_seconds(api),
        "worker": tree_cpu_seconds(worker),
        "endpoint": tree_cpu_seconds(bench.reference),
        "postgres": backend_cpu_seconds(t.factory),
        "machine": machine_busy_seconds(),
    }


def _e2e_baseline(bench: Bench, settings: Settings, n: int) -> dict:
    """Bare no-ops, same worker settings, same Redis: tasks per second and CPU per task."""
    queue = settings.certification_queue_name + "-baseline"
    client = redis.Redis.from_url(str(settings.redis_url))
    base_proc = start_baseline_worker(bench, settings, queue)
    run = uuid.uuid4().hex[:8]
    cpu0, busy0 = tree_cpu_seconds(base_proc), machine_busy_seconds()
    first = publish_noops(settings, queue, run, n)
    done = wait_noops(client, run, n, 300)
    rate = n / (max(end for _, end in done) - first) if len(done) == n else None
    cpu = {
        "worker": (tree_cpu_seconds(base_proc) - cpu0) / n * 1000,
        "machine": (machine_busy_seconds() - busy0) / n * 1000,
    }
    bench.stop(base_proc)
    return {"rate": rate, "cpu_ms_per_task": {k: round(v, 2) for k, v in cpu.items()}}


def _e2e_ours(bench: Bench, settings: Settings, n: int) -> dict:
    """N jobs POSTed through the API, run by `modelcert worker`, to the terminal status."""
    t = tenant(settings)
    target_id = t.target(f"{bench.reference_url}/m/good/v1")
    # Idle backends flush their statistics late; count from before the processes start to
    # after they stop (backends flush at exit), over the warm-up jobs and the measured ones.
    commits0, rollbacks0 = xact_counts(t.factory)
    api = bench.start_api(settings)
    worker = bench.start_worker(settings)
    url = f"http://127.0.0.1:{settings.api_port}"
    warm = 4
    warm_ours(url, t, target_id, warm)
    measured = t.target(f"{bench.reference_url}/m/good/v1")  # its jobs are the measured ones
    wrk = wrk_available()
    cpu0 = cpu_split(bench, t, api, worker)
    first = time.time()
    if wrk is not None:
        ids = post_with_wrk(bench, wrk, url, t, measured, n)
    else:  # without root to install wrk: the Python client (slower: it takes CPU from ours)
        ids = [i for i, _ in asyncio.run(post_jobs(url, t, measured, n))]
    finished = wait_terminal(t.factory, ids, 600)
    rows = job_rows(t.factory, ids)
    posts_done = max(r.created_at.timestamp() for r in rows)
    last = max((r.finished_at.timestamp() for r in rows if r.finished_at), default=None)
    cpu1 = cpu_split(bench, t, api, worker)
    bench.stop(worker)
    bench.stop(api)
    time.sleep(1.0)
    commits1, rollbacks1 = xact_counts(t.factory)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
    return {
        "rate": len(ids) / (last - first) if last and finished == len(ids) else None,
        "jobs": len(ids),
        "post_client": "wrk" if wrk else "aiohttp",
        "statuses": statuses,
        "commits_per_job": round((commits1 - commits0 - 2) / (len(ids) + warm), 2),
        # The API's share: how fast the POSTs were answered (with the worker busy).
        "post_rate": round(len(ids) / (posts_done - first), 1),
        # Where the time goes (cpu_split): the machine has 2 cores, so at 100 % busy it
        # finishes at most 2000 / machine-ms jobs per second.
        "cpu_ms_per_job": {k: round((cpu1[k] - cpu0[k]) / len(ids) * 1000, 2) for k in cpu0},
        "rollbacks_per_job": round((rollbacks1 - rollbacks0) / (len(ids) + warm), 2),
    }


BASELINE_SCALE = 3  # no-op tasks per job of ours in e2e_throughput (see there)


def e2e_throughput(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    n = 20 if tiny else (200 if quick else 1000)
    settings = bench.settings(certification_concurrency=WORKERS)
    # Full runs interleave rounds (baseline, ours, baseline, ours, …) and keep each side's
    # best, as api_create does: on this shared host one round of either side can land in a
    # neighbour's busy minute.
    rounds = 1 if quick or tiny else FULL_ROUNDS

    # The no-op baseline runs about three times as fast as ours: with the same N its run was
    # a third as long (2-3 s against 7-8), and a short run's best of three is more often a
    # quiet moment's alone (1,000 no-ops: 320-488 tasks/s over five runs, 3,000: 299-412).
    # It gets BASELINE_SCALE times the tasks, so both sides are timed over similar windows.
    def rate(r: dict) -> float | None:  # type: ignore[type-arg]
        return r["rate"]  # type: ignore[no-any-return]

    runs, base, best = Interleaved.run(
        rounds,
        lambda: _e2e_baseline(bench, settings, n * BASELINE_SCALE),
        lambda: _e2e_ours(bench, settings, n),
        rate,
    )
    extra_keys = ("commits_per_job", "post_rate", "cpu_ms_per_job", "rollbacks_per_job")
    return {
        "ours": round(best["rate"], 1) if best["rate"] else None,
        "baseline": round(base["rate"], 1) if base["rate"] else None,
        "ratio": ratio(best["rate"], base["rate"]),
        "units": "jobs/s",
        "target": "ratio >= 0.3; commits per job <= 4",
        "extra": {
            **{k: best[k] for k in extra_keys},
            "baseline_cpu_ms_per_task": base["cpu_ms_per_task"],
        },
        "parameters": {
            "jobs": best["jobs"],
            "baseline_tasks": n * BASELINE_SCALE,
            "worker_processes": WORKERS,
            "suite": "bench-trivial",
            "post_clients": 8,
            "post_client": best["post_client"],
            "statuses": best["statuses"],
            "rounds": rounds,
            "loadavg": runs.loads,
            "runs": {
                "baseline": [round(r["rate"] or 0, 1) for r in runs.baseline],
                "ours": [round(r["rate"] or 0, 1) for r in runs.ours],
                "paired_ratios": runs.paired_ratios(rate),
                "steal_pct": runs.steal,
                "ours_cpu_ms_per_job": [r["cpu_ms_per_job"] for r in runs.ours],
                "ours_commits_per_job": [r["commits_per_job"] for r in runs.ours],
            },
            "commits_note": "pg_stat_database.xact_commit delta of the bench "
            "database over the run / jobs: API (auth, insert, "
            "dispatched_at) and worker (claim, progress, "
            "checkpoint, finish, lease renewals) together",
        },
    }


DISPATCH_RATE = 50.0  # jobs per second, open loop, both sides


def _dispatch_baseline(bench: Bench, settings: Settings, n: int) -> dict:  # type: ignore[type-arg]
    """`send_task` at DISPATCH_RATE to a fresh no-op worker: ms from after `send_task`
    returned to `time.time()` in the task."""
    queue = settings.certification_queue_name + "-baseline"
    proc = start_baseline_worker(bench, settings, queue)
    run = uuid.uuid4().hex[:8]
    publish_noops(settings, queue, run, n, rate=DISPATCH_RATE)
    done = wait_noops(redis.Redis.from_url(str(settings.redis_url)), run, n, 300)
    bench.stop(proc)
    return _latencies([(end - sent) * 1000 for sent, end in done], n)


def _dispatch_ours(
    bench: Bench, settings: Settings, t: Tenant, target_id: uuid.UUID, n: int
) -> dict:  # type: ignore[type-arg]
    """POSTs at DISPATCH_RATE to a fresh API and worker: ms from the 202's arrival to the
    job's claim (`certifications.started_at`, Postgres `now()`)."""
    api = bench.start_api(settings)
    worker = bench.start_worker(settings)
    url = f"http://127.0.0.1:{settings.api_port}"
    warm_ours(url, t, target_id)
    posted = asyncio.run(post_jobs(url, t, target_id, n, rate=DISPATCH_RATE))
    wait_terminal(t.factory, [i for i, _ in posted], 600)
    rows = {r.id: r for r in job_rows(t.factory, [i for i, _ in posted])}
    bench.stop(worker)
    bench.stop(api)
    span = max(r for _, r in posted) - min(r for _, r in posted)
    return _latencies(
        [
            (rows[i].started_at.timestamp() - returned) * 1000
            for i, returned in posted
            if rows[i].started_at is not None
        ],
        n,
    ) | {"achieved_post_rate": round(n / span, 1) if span else None}


def _latencies(ms: list[float], n: int) -> dict:  # type: ignore[type-arg]
    return {
        "p50": _r(percentile(ms, 50)),
        "p99": _r(percentile(ms, 99)),
        "max": _r(max(ms, default=None)),
        "started": len(ms),
        "sent": n,
        # A round where a job never started has no p99 to speak of.
        "complete": len(ms) == n,
    }


def dispatch_latency(bench: Bench, quick: bool, tiny: bool = False) -> dict:  # type: ignore[type-arg]
    seconds = 1 if tiny else (6 if quick else 20)
    n = int(DISPATCH_RATE * seconds)
    settings = bench.settings(certification_concurrency=WORKERS)
    t = tenant(settings)
    target_id = t.target(f"{bench.reference_url}/m/good/v1")
    rounds = 1 if quick or tiny else FULL_ROUNDS

    # Full runs interleave fresh stacks (a no-op worker, then our API and worker) and keep
    # each side's lowest p99: a tail of 50-150 ms in one round is the host taking a core
    # away (steal, see bench/README "Eleventh pass"), and the rounds all stay in the output.
    def p99(r: dict) -> float | None:  # type: ignore[type-arg]
        return r["p99"] if r["complete"] else None  # type: ignore[no-any-return]

    runs, base, best = Interleaved.run(
        rounds,
        lambda: _dispatch_baseline(bench, settings, n),
        lambda: _dispatch_ours(bench, settings, t, target_id, n),
        p99,
        lower_is_better=True,
    )
    return {
        "ours": best["p99"],
        "baseline": base["p99"],
        "ratio": ratio(p99(best), p99(base)),
        "units": "ms p99 (POST returned -> task started)",
        "target": "p99 ratio <= 2",
        "extra": {"ours_p50_ms": best["p50"], "baseline_p50_ms": base["p50"]},
        "parameters": {
            "rate_per_s": DISPATCH_RATE,
            "jobs": n,
            "worker_processes": WORKERS,
            "achieved_post_rate": best["achieved_post_rate"],
            "started": best["started"],
            "rounds": rounds,
            "loadavg": runs.loads,
            "runs": {
                "baseline": runs.baseline,
                "ours": runs.ours,
                "paired_ratios": runs.paired_ratios(p99),
                "steal_pct": runs.steal,
            },
            "clock": "ours: certifications.started_at (Postgres now() at claim) "
            "minus time.time() when the 202 arrived; baseline: "
            "time.time() in the task minus after apply_async returned",
        },
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def memory(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    n = 20 if tiny else (200 if quick else 1000)
    # Recycling children every 200 tasks (the default) would hide growth; measure without it.
    settings = bench.settings(certification_concurrency=3, worker_max_tasks_per_child=100000)
    t = tenant(settings)
    target_id = t.target(f"{bench.reference_url}/m/good/v1")
    api = bench.start_api(settings)
    worker = bench.start_worker(settings)
    url = f"http://127.0.0.1:{settings.api_port}"
    time.sleep(1.0)
    idle = {"api": memory_mb(api), "worker": memory_mb(worker)}
    warm = max(3, n // 10)
    ids = [i for i, _ in asyncio.run(post_jobs(url, t, target_id, warm))]
    wait_terminal(t.factory, ids, 300)
    warmed = {"api": memory_mb(api), "worker": memory_mb(worker)}
    ids = [i for i, _ in asyncio.run(post_jobs(url, t, target_id, n))]
    finished = wait_terminal(t.factory, ids, 600)
    after = {"api": memory_mb(api), "worker": memory_mb(worker)}
    bench.stop(worker)
    bench.stop(api)
    key = "pss_mb" if after["worker"]["pss_mb"] is not None else "rss_mb"
    growth = (after["worker"][key] / warmed["worker"][key] - 1) if warmed["worker"][key] else None
    return {
        "ours": after["worker"][key],
        "baseline": None,
        "ratio": None,
        "units": f"MB worker total ({key[:3].upper()}) after {n} jobs, concurrency 3",
        "target": "worker total <= 400 MB; growth over the jobs <= 10 %",
        "extra": {
            "growth_after_warmup_pct": None if growth is None else round(growth * 100, 1),
            "worker_idle_mb": idle["worker"][key],
            "api_after_mb": after["api"][key],
        },
        "parameters": {
            "jobs": n,
            "warmup_jobs": warm,
            "finished": finished,
            "worker_concurrency": 3,
            "worker_max_tasks_per_child": 100000,
            "idle": idle,
            "after_warmup": warmed,
            "after": after,
        },
    }
