"""One client process sending N chat requests at concurrency C; prints wall and CPU seconds.

`plain`: the baseline, a bare asyncio + aiohttp loop (one session, connector limit C, the
engine's default timeouts).
`engine`: our engine in process (`runner.execute` with a one-check latency suite), no database.
`engine-gated`: the same with the worker's shared Redis limiter as the gate (`REDIS_URL`), the
target declaring `max_concurrency` = C, as `modelcert worker` runs it.
Run as a subprocess so its CPU time is its own: `python -m bench.loadclient plain URL N C`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from app.certification.checks.chat import chat_prompt

MODEL = "reference-model"


async def plain(base_url: str, n: int, c: int) -> dict[str, int]:
    counts = {"ok": 0, "errors": 0}
    limit = asyncio.Semaphore(c)
    connector = aiohttp.TCPConnector(limit=c, limit_per_host=c)
    # The timeouts a certification runs under by default (the suite's run conditions: 5 s to
    # connect, 60 s for a read and for the whole request): a request with no total limit is
    # not what the job needs, as an endpoint trickling its reply would hold it for ever.
    timeout = aiohttp.ClientTimeout(total=60, sock_connect=5, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int) -> None:
            prompt, _ = chat_prompt(index)
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 16,
                "temperature": 0.0,
            }
            async with limit:
                try:
                    async with session.post(f"{base_url}/chat/completions", json=body) as r:
                        data = await r.json()
                        ok = r.status == 200 and bool(data["choices"][0]["message"]["content"])
                except (TimeoutError, aiohttp.ClientError, KeyError, ValueError):
                    ok = False
            counts["ok" if ok else "errors"] += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return counts


def latency_suite(n: int, c: int):  # type: ignore[no-untyped-def]
    from app.certification.suites import CheckEntry, RunSpec, Suite, SuiteFile

    definition = SuiteFile(
        name="bench-inprocess",
        version="1",
        max_error_rate=0.5,
        run=RunSpec(concurrency=c),
        checks=[
            CheckEntry(
                name="latency",
                params={"requests": n, "concurrency": c, "p95_slo_ms": 60000, "max_tokens": 16},
            )
        ],
    )
    return Suite(definition, "sha256:none")


async def engine(base_url: str, n: int, c: int, gated: bool = False) -> dict[str, int]:
    import os

    from app.certification.checks import TargetSpec
    from app.certification.engine import EngineHooks
    from app.certification.runner import execute
    from app.services import ratelimit

    spec = TargetSpec(
        provider="openai_compatible", model=MODEL, base_url=base_url, max_concurrency=c
    )
    kwargs = {}
    if gated:
        kwargs["gate"] = ratelimit.gate_for(os.environ["REDIS_URL"], base_url, None, None, c)
    results = await execute(latency_suite(n, c), spec, None, EngineHooks(), **kwargs)
    result = results[0]
    return {"ok": result.passed + result.failed, "errors": result.errored}


def main(argv: list[str]) -> None:
    mode, base_url, n, c = argv[0], argv[1], int(argv[2]), int(argv[3])
    run = {
        "plain": plain,
        "engine": engine,
        "engine-gated": lambda u, n, c: engine(u, n, c, gated=True),
    }[mode]
    if mode != "plain":  # imported before the clock starts: the engine's own cost only
        import app.certification.checks.latency  # noqa: F401
        import app.certification.runner  # noqa: F401
        import app.services.ratelimit  # noqa: F401
    profile = len(argv) > 4 and argv[4] == "--profile"
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    counts = asyncio.run(run(base_url, n, c))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if profiler is not None:
        profiler.stop()
        sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))
    print(json.dumps({"mode": mode, "n": n, "c": c, "wall_s": wall, "cpu_s": cpu, **counts}))


if __name__ == "__main__":
    main(sys.argv[1:])
