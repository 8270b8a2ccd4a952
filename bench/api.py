"""api_create: POST /v1/certifications through gunicorn, driven by wrk, against a bare baseline.

Peak: `wrk -t2 -c20` (20 keep-alive connections). wrk2 (constant rate) is not in Debian, so
"p99 at 70 % of peak" is measured closed-loop: one connection gives the unloaded rate X1;
`c = max(1, round(0.7 * peak / X1))` connections then offer about 70 % of the peak, and
`wrk --latency` at that c gives the p99 (the achieved fraction of the peak is reported).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import redis

from bench.common import FULL_ROUNDS, Interleaved, Tenant, ratio, tenant
from bench.stack import Bench, free_port

LUA = """
local counter = 0
local tid = 0
function setup(thread)
  thread:set("tid", tid)
  tid = tid + 1
end
function init(args)
  prefix = args[1] .. "-" .. tostring(tid) .. "-"
end
request = function()
  counter = counter + 1
  local headers = {}
  headers["Authorization"] = "Bearer %(token)s"
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = prefix .. tostring(counter)
  return wrk.format("POST", "/v1/certifications", headers, '%(body)s')
end
"""

UNITS = {"ms": 1.0, "us": 0.001, "s": 1000.0, "m": 60000.0}


def wrk_available(install: bool = True) -> str | None:
    """The wrk binary; installed with apt-get when missing and we are root."""
    path = shutil.which("wrk")
    if path or not install:
        return path
    import os

    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return shutil.which("wrk")


def parse_wrk(out: str) -> dict[str, float | int | None]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p = {q: re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M) for q in (50, 99)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)) if rps else None,
        "p50_ms": round(float(p[50].group(1)) * UNITS[p[50].group(2)], 2) if p[50] else None,
        "p99_ms": round(float(p[99].group(1)) * UNITS[p[99].group(2)], 2) if p[99] else None,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int) -> dict:
    threads = max(1, min(2, connections))
    # Every run gets fresh idempotency keys (the script's prefix): a key sent by an earlier
    # run of the same script would be answered as a replay, a different path.
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        uuid.uuid4().hex[:12],
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    result = parse_wrk(out.stdout)
    result["connections"] = connections
    return result


def script_for(bench: Bench, token: str, target_id: uuid.UUID) -> Path:
    path = bench.workdir / f"post-{uuid.uuid4().hex[:6]}.lua"
    body = json.dumps({"target_id": str(target_id), "suite": "bench-trivial"})
    path.write_text(LUA % {"token": token, "body": body})
    return path


def measure(wrk: str, url: str, script: Path, seconds: int, connections: int) -> dict:
    peak = run_wrk(wrk, url, script, connections, seconds)
    one = run_wrk(wrk, url, script, 1, max(2, seconds // 2))
    c70 = max(1, round(0.7 * (peak["rps"] or 0) / (one["rps"] or 1)))
    c70 = min(c70, connections)
    at70 = run_wrk(wrk, url, script, c70, seconds)
    at70["fraction_of_peak"] = round((at70["rps"] or 0) / (peak["rps"] or 1), 2)
    return {"peak": peak, "single": one, "at_70pct": at70}


def api_create(bench: Bench, quick: bool, tiny: bool = False) -> dict:
    wrk = wrk_available()
    if wrk is None:
        return {"skipped": "wrk is not installed (Debian package 'wrk'; apt-get needs root)"}
    seconds = 2 if tiny else (5 if quick else 15)
    connections = 20
    settings = bench.settings()
    t: Tenant = tenant(settings)
    target_id = t.target(f"{bench.reference_url}/m/good/v1")
    base_port = free_port()
    baseline_proc = bench.start_module(
        "bench.baseline_api",
        [
            "--bind",
            f"127.0.0.1:{base_port}",
            "--org",
            str(t.who.organization_id),
            "--target",
            str(target_id),
        ],
        settings,
        "baseline-api",
    )
    api_proc = bench.start_api(settings)
    _wait_port(base_port, baseline_proc)
    rounds = 1 if quick else FULL_ROUNDS

    def peak(r: dict) -> float:  # type: ignore[type-arg]
        return float(r["peak"]["rps"])

    runs, base, ours = Interleaved.run(
        rounds,
        lambda: measure(
            wrk,
            f"http://127.0.0.1:{base_port}/v1/certifications",
            script_for(bench, t.token, target_id),
            seconds,
            connections,
        ),
        lambda: measure(
            wrk,
            f"http://127.0.0.1:{settings.api_port}/v1/certifications",
            script_for(bench, t.token, target_id),
            seconds,
            connections,
        ),
        peak,
    )
    bench.stop(api_proc)
    bench.stop(baseline_proc)
    _drop_queues(settings)
    return {
        "ours": ours["peak"]["rps"],
        "baseline": base["peak"]["rps"],
        "ratio": ratio(ours["peak"]["rps"], base["peak"]["rps"]),
        "units": "requests/s",
        "target": "ratio >= 0.5; p99 at 70% of peak <= 50 ms",
        "extra": {
            "ours_p99_at_70pct_ms": ours["at_70pct"]["p99_ms"],
            "baseline_p99_at_70pct_ms": base["at_70pct"]["p99_ms"],
            "ours_p99_at_peak_ms": ours["peak"]["p99_ms"],
        },
        "parameters": {
            "connections": connections,
            "seconds": seconds,
            "rounds": rounds,
            "api_workers": settings.api_workers,
            "threads": settings.api_threads,
            "worker_class": "gthread",
            "loadavg": runs.loads,
            "runs": {
                "ours": runs.ours,
                "baseline": runs.baseline,
                "paired_ratios": runs.paired_ratios(peak),
                "steal_pct": runs.steal,
            },
        },
    }


def _wait_port(port: int, proc) -> None:  # type: ignore[no-untyped-def]
    import socket
    import time

    for _ in range(300):
        if proc.popen.poll() is not None:
            raise RuntimeError(f"baseline API exited: {proc.log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError("baseline API did not listen")


def _drop_queues(settings) -> None:  # type: ignore[no-untyped-def]
    """Nobody consumes the jobs posted here; drop their messages from Redis."""
    client = redis.Redis.from_url(str(settings.redis_url))
    for key in client.scan_iter(f"{settings.certification_queue_name}*"):
        client.delete(key)
