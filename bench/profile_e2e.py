"""Where an e2e run's time goes: N jobs of `bench-trivial` POSTed by wrk through `modelcert api`
and run by `modelcert worker` (as bench e2e_throughput does), with the CPU per job of each
process (API workers, the worker's main process and each pool child, this database's
Postgres backends, redis-server, the reference endpoint, the whole machine) and a timeline
of jobs created and finished per half second.

`python -m bench.profile_e2e [N] [--json]`; children are not recycled during the run
(WORKER_MAX_TASKS_PER_CHILD is raised), so each child's figure covers the whole run.
`--json` prints one JSON object instead of the tables (for comparing trees run by run).
"""

from __future__ import annotations

import bisect
import json
import sys
import time
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench.api import wrk_available
from bench.common import job_rows, machine_busy_seconds, tenant, wait_terminal
from bench.jobs import WORKERS, post_with_wrk, warm_ours
from bench.stack import Bench, Proc


def _own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def cpu_by_process(
    roots: dict[str, Proc], factory: sessionmaker[Session] | None = None
) -> dict[str, float]:
    """CPU seconds so far of each root process and each of its children (by pid), of every
    redis-server and Postgres process on the machine, and of the machine. With `factory`,
    Postgres backends are also counted by the application_name of their client
    (`postgres.<name>`: modelcert-api, modelcert-worker, …)."""
    seconds: dict[str, float] = {}
    clients = backend_clients(factory) if factory is not None else {}
    for name, root in roots.items():
        tree = root.tree()
        for index, process in enumerate(tree):
            try:
                key = f"{name}.main" if index == 0 else f"{name}.child-{process.pid}"
                seconds[key] = _own_cpu(process)
            except psutil.Error:
                pass
    for process in psutil.process_iter(["name"]):
        server = next(
            (s for s in ("redis-server", "postgres") if (process.info["name"] or "").startswith(s)),
            None,
        )
        if server is not None:
            try:
                cpu = _own_cpu(process)
            except psutil.Error:
                continue
            seconds[server] = seconds.get(server, 0.0) + cpu
            if server == "postgres" and process.pid in clients:
                key = f"postgres.{clients[process.pid]}"
                seconds[key] = seconds.get(key, 0.0) + cpu
    seconds["machine"] = machine_busy_seconds()
    return seconds


def backend_clients(factory: sessionmaker[Session]) -> dict[int, str]:
    """Postgres backend pid → its client's application_name, for the bench's database."""
    with factory() as session:
        return {
            pid: name or "unnamed"
            for pid, name in session.execute(
                text(
                    "SELECT pid, application_name FROM pg_stat_activity "
                    "WHERE datname = current_database()"
                )
            )
        }


def timeline(rows: list[Any], step: float = 0.5) -> list[tuple[float, int, int]]:
    """(start of the slot, jobs created in it, jobs finished in it) from the first POST."""
    t0 = min(r.created_at.timestamp() for r in rows)
    created = sorted(r.created_at.timestamp() - t0 for r in rows)
    finished = sorted(r.finished_at.timestamp() - t0 for r in rows if r.finished_at)
    slots = int((finished[-1] if finished else created[-1]) / step) + 1

    def within(times: list[float], k: int) -> int:  # in [k·step, (k+1)·step)
        return bisect.bisect_left(times, (k + 1) * step) - bisect.bisect_left(times, k * step)

    return [(k * step, within(created, k), within(finished, k)) for k in range(slots)]


def profile(n: int) -> dict[str, Any]:
    wrk = wrk_available()
    if wrk is None:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    bench = Bench()
    try:
        settings = bench.settings(
            certification_concurrency=WORKERS, worker_max_tasks_per_child=100_000
        )
        t = tenant(settings)
        api, worker = bench.start_api(settings), bench.start_worker(settings)
        url = f"http://127.0.0.1:{settings.api_port}"
        warm_ours(url, t, t.target(f"{bench.reference_url}/m/good/v1"))
        measured = t.target(f"{bench.reference_url}/m/good/v1")
        roots = {"api": api, "worker": worker, "endpoint": bench.reference}
        before, started = cpu_by_process(roots, t.factory), time.time()
        ids = post_with_wrk(bench, wrk, url, t, measured, n)
        done = wait_terminal(t.factory, ids, 600)
        after, elapsed = cpu_by_process(roots, t.factory), time.time() - started
        rows = job_rows(t.factory, ids)
    finally:
        bench.close()
    return {
        "jobs": len(ids),
        "terminal": done,
        "jobs_per_second": round(len(ids) / elapsed, 1),
        "cpu_ms_per_job": {
            k: round((after[k] - before.get(k, 0.0)) / len(ids) * 1000, 3) for k in sorted(after)
        },
        "timeline": timeline(rows),
    }


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv and argv[0].isdigit() else 1000
    result = profile(n)
    if "--json" in argv:
        print(json.dumps(result))
        return
    print(
        f"{result['jobs']} jobs ({result['terminal']} terminal), "
        f"{result['jobs_per_second']} jobs/s from the first POST to the last finish"
    )
    print("\nCPU per job (ms):")
    for name, ms in result["cpu_ms_per_job"].items():
        print(f"  {name:28s} {ms:8.3f}")
    print("\n  from (s)  created  finished")
    for start, created, finished in result["timeline"]:
        print(f"  {start:8.1f}  {created:7d}  {finished:8d}")


if __name__ == "__main__":
    main(sys.argv[1:])
