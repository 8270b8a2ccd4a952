"""concurrency_efficiency, client_overhead, ratelimit_goodput: the engine against the reference
endpoint, in process and through `modelcert worker`, against a plain asyncio + aiohttp loop."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx
from sqlalchemy import func, select

from app.db.models import CheckResultRow, SampleRow
from app.queue.publisher import Publisher
from app.schemas.resources import CertificationCreate
from app.services.certifications import create_certification
from bench.common import (
    FULL_ROUNDS,
    Tenant,
    best_of,
    cpu_clock,
    job_rows,
    load_now,
    ratio,
    steal_pct,
    tenant,
    tree_cpu_seconds,
    wait_terminal,
)
from bench.stack import Bench, Proc

LATENCY_MS = 200


def loadclient(mode: str, base_url: str, n: int, c: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadclient", mode, base_url, str(n), str(c)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scope_total(reference: str, scope: str) -> int:
    stats = httpx.get(f"{reference}/_stats", timeout=10).json()
    return int(stats.get("by_scope", {}).get(scope, {}).get("total", 0))


def certify(t: Tenant, settings, target_id: uuid.UUID, suite: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    view, _ = create_certification(
        t.factory,
        settings,
        Publisher(settings).publish_run,
        t.who,
        CertificationCreate(target_id=target_id, suite=suite),
        None,
    )
    return view.id


def worker_run(bench: Bench, t: Tenant, settings, worker: Proc, c: int, suite: str) -> dict:  # type: ignore[no-untyped-def]
    """One certification of `suite` at job concurrency c, against slow-200, via the worker.
    The target declares no streaming, so the latency check sends what the bare loops send
    (one JSON reply per request): streamed, each reply is several SSE events to read, the
    protocol's cost rather than ours."""
    scope = f"slow-{LATENCY_MS}"
    target_id = t.target(f"{bench.reference_url}/m/{scope}/v1", max_concurrency=c, streaming=False)
    requests0 = scope_total(bench.reference_url, scope)
    cpu0 = tree_cpu_seconds(worker)
    job = certify(t, settings, target_id, suite)
    wait_terminal(t.factory, [job], 600)
    cpu1 = tree_cpu_seconds(worker)
    requests = scope_total(bench.reference_url, scope) - requests0
    row = job_rows(t.factory, [job])[0]
    with t.factory() as session:
        check = session.scalar(select(CheckResultRow).where(CheckResultRow.certification_id == job))
    return {
        "status": row.status.value,
        "check_seconds": check.duration_seconds if check else None,
        "job_seconds": round((row.finished_at - row.started_at).total_seconds(), 3)
        if row.finished_at and row.started_at
        else None,
        "samples_ok": (check.passed + check.failed) if check else 0,
        "errored": check.errored if check else None,
        "concurrency_used": (check.details or {}).get("concurrency") if check else None,
        "requests": requests,
        "worker_cpu_s": round(cpu1 - cpu0, 3),
    }


def _worker_runs(bench: Bench, quick: bool, tiny: bool) -> dict:
    """Shared by concurrency_efficiency and client_overhead (measured once per bench run).
    Full runs measure FULL_ROUNDS rounds (plain, engine, worker at each C) and keep, for each
    mode and C, the quickest run: one 2-second run at C=256 is easily a neighbour's busy
    second. Every round is kept under "rounds"."""
    cache = getattr(bench, "cache", None)
    if cache is None:
        cache = bench.cache = {}  # type: ignore[attr-defined]
    if "worker_runs" in cache:
        return cache["worker_runs"]
    n = 100 if tiny else 2000
    suite = "bench-ratelimit" if tiny else "bench-latency"  # 100 or 2,000 latency samples
    settings = bench.settings(certification_concurrency=1)
    t = tenant(settings)
    worker = bench.start_worker(settings)
    worker_run(bench, t, settings, worker, 8, "bench-trivial")  # warm the pool child
    scope_url = f"{bench.reference_url}/m/slow-{LATENCY_MS}/v1"
    rounds: list[dict[str, dict]] = []  # type: ignore[type-arg]
    for _ in range(1 if quick or tiny else FULL_ROUNDS):
        one: dict[str, dict] = {}  # type: ignore[type-arg]
        for c in (64,) if tiny else (64, 256):
            for mode in ("plain", "engine", "worker"):
                since = cpu_clock()
                run = (
                    worker_run(bench, t, settings, worker, c, suite)
                    if mode == "worker"
                    else loadclient(mode, scope_url, n, c)
                )
                one[f"{mode}_{c}"] = run | {"steal_pct": steal_pct(since)}
            one[f"worker_{c}"]["load"] = load_now()
        rounds.append(one)
    bench.stop(worker)
    runs: dict[str, object] = {"n": n, "rounds": rounds}
    for key in rounds[0]:
        took = "check_seconds" if key.startswith("worker_") else "wall_s"
        runs[key] = best_of(
            [r[key] for r in rounds],
            lambda run: run.get(took),  # noqa: B023
            lower_is_better=True,
        )
    cache["worker_runs"] = runs
    return runs


def concurrency_efficiency(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    runs = _worker_runs(bench, quick, tiny)
    n = int(runs["n"])  # type: ignore[arg-type]
    eff: dict[str, float | None] = {}
    for c in (64, 256):
        if f"plain_{c}" not in runs:
            continue
        ideal = n * LATENCY_MS / 1000 / c
        worker = runs[f"worker_{c}"]
        eff[f"worker_{c}"] = (
            round(ideal / worker["check_seconds"], 3) if worker.get("check_seconds") else None
        )  # type: ignore[union-attr]
        eff[f"worker_job_{c}"] = (
            round(ideal / worker["job_seconds"], 3) if worker.get("job_seconds") else None
        )  # type: ignore[union-attr]
        eff[f"engine_{c}"] = round(ideal / runs[f"engine_{c}"]["wall_s"], 3)  # type: ignore[index]
        eff[f"plain_{c}"] = round(ideal / runs[f"plain_{c}"]["wall_s"], 3)  # type: ignore[index]
    return {
        "ours": eff.get("worker_64"),
        "baseline": eff.get("plain_64"),
        "ratio": ratio(eff.get("worker_64"), eff.get("plain_64")),
        "units": "efficiency (ideal N*L/C / measured) at C=64, worker",
        "target": "efficiency >= 0.9 at 64, >= 0.8 at 256",
        "extra": {k: v for k, v in eff.items() if k != "worker_64"},
        "parameters": {
            "n": n,
            "latency_ms": LATENCY_MS,
            "endpoint": "/m/slow-200/v1",
            "ideal": "N*L/C",
            "worker": "the check's own duration "
            "(worker_job_* adds claim, 2,000 sample inserts and finish)",
            "runs": runs,
        },
    }


def client_overhead(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    runs = _worker_runs(bench, quick, tiny)
    rounds = runs["rounds"]

    def per_k(cpu_s: float, requests: int) -> float:
        return 1000 * cpu_s / max(1, requests)

    # Each side's least CPU per 1,000 requests over the rounds (as the other benchmarks keep
    # each side's best round).
    per_k_worker = min(
        per_k(r["worker_64"]["worker_cpu_s"], r["worker_64"]["requests"]) for r in rounds
    )
    per_k_plain, per_k_engine = (
        min(per_k(r[k]["cpu_s"], r[k]["ok"] + r[k]["errors"]) for r in rounds)
        for k in ("plain_64", "engine_64")
    )
    worker = runs["worker_64"]
    return {
        "ours": round(per_k_worker, 3),
        "baseline": round(per_k_plain, 3),
        "ratio": ratio(per_k_worker, per_k_plain),
        "units": "CPU s per 1,000 requests",
        "target": "ratio <= 3",
        "extra": {
            "engine_in_process": round(per_k_engine, 3),
            "engine_ratio": ratio(per_k_engine, per_k_plain),
        },
        "parameters": {
            "concurrency": 64,
            "requests": worker["requests"],  # type: ignore[index]
            "worker": "user+system CPU of the worker's main process and pool "
            "child over one certification (HTTP, grading, evidence "
            "inserts, lease renewals, checkpoint)",
            "baseline": "process_time of a plain asyncio+aiohttp loop process",
        },
    }


def ratelimit_goodput(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    q = 20.0
    jobs = 2 if (quick or tiny) else 4
    settings = bench.settings(certification_concurrency=2)
    t = tenant(settings)
    worker = bench.start_worker(settings)
    scope = f"ratelimit-{int(q)}"
    target_id = t.target(f"{bench.reference_url}/m/{scope}/v1", rps=q)
    requests0 = scope_total(bench.reference_url, scope)
    ids = [certify(t, settings, target_id, "bench-ratelimit") for _ in range(jobs)]
    finished = wait_terminal(t.factory, ids, 900)
    rows = job_rows(t.factory, ids)
    attempts = scope_total(bench.reference_url, scope) - requests0
    bench.stop(worker)
    with t.factory() as session:
        checks = list(
            session.scalars(select(CheckResultRow).where(CheckResultRow.certification_id.in_(ids)))
        )
        samples = (
            session.scalar(
                select(func.count())
                .select_from(SampleRow)
                .where(SampleRow.certification_id.in_(ids))
            )
            or 0
        )
        distinct = (
            session.scalar(
                select(func.count()).select_from(
                    select(SampleRow.certification_id, SampleRow.check_name, SampleRow.sample_index)
                    .where(SampleRow.certification_id.in_(ids))
                    .distinct()
                    .subquery()
                )
            )
            or 0
        )
    ok = sum(c.passed + c.failed for c in checks)
    errored = sum(c.errored for c in checks)
    planned = 100 * jobs
    starts = [r.started_at for r in rows if r.started_at]
    ends = [r.finished_at for r in rows if r.finished_at]
    elapsed = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    # The reference bucket starts full (a burst of Q), so Q tokens come free at the start.
    goodput = (ok - q) / elapsed if elapsed and ok > q else None
    return {
        "ours": round(goodput, 2) if goodput else None,
        "baseline": q,
        "ratio": ratio(goodput, q),
        "units": "successful requests/s beyond the burst (ideal Q)",
        "target": "goodput >= 0.9 Q, 0 lost, 0 duplicated",
        "extra": {
            "lost_jobs": jobs - finished,
            "lost_samples": planned - samples,
            "errored_samples": errored,
            "duplicated_samples": samples - distinct,
            "attempts_per_success": round(attempts / ok, 2) if ok else None,
            "raw_goodput": round(ok / elapsed, 2) if elapsed else None,
        },
        "parameters": {
            "q_per_s": q,
            "jobs": jobs,
            "requests_per_job": 100,
            "worker_processes": 2,
            "elapsed_s": elapsed,
            "attempts": attempts,
            "statuses": [r.status.value for r in rows],
            "loadavg": load_now(),
            "note": "no shared rate limiter yet (issue 5): the engine only "
            "honours 429 + Retry-After with per-sample retries (3 "
            "attempts); re-measure after the shared Redis limiter merges",
        },
    }
