"""Profile `POST /v1/certifications` in process: pyinstrument around N requests through the
Flask test client (same app as gunicorn runs) against real Postgres and Redis.

`python -m bench.profile_api [N] [--all] [--bare]` prints the wall and CPU time per request
and the pyinstrument tree (`--bare`: no pyinstrument, for `py-spy record` around it).
No worker runs, so the messages pile up in a private queue (dropped at the end).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.config import Settings
from bench.common import tenant
from bench.stack import Bench, settings_env


@contextmanager
def trivial_posts(
    bare: bool = False,
    suite: str = "bench-trivial",
    scope: str = "good",
    max_concurrency: int | None = None,
    streaming: bool = True,
) -> Iterator[tuple[Settings, Callable[[], str]]]:
    """A private stack (database, reference endpoint) and a function that POSTs one job of
    `suite` against the reference endpoint's mode `scope` (the target at `max_concurrency`,
    else the default, declaring `streaming` or not) through the API's Flask test client and
    returns its id. `bare`: to the api_create baseline's view (bench.baseline_api) instead,
    without a token."""
    from app.api.factory import build_app
    from bench.api import _drop_queues
    from bench.baseline_api import create_app

    bench = Bench()
    try:
        settings = bench.settings()
        t = tenant(settings)
        target_id = t.target(
            f"{bench.reference_url}/m/{scope}/v1",
            max_concurrency=max_concurrency,
            streaming=streaming,
        )
        if bare:
            os.environ.update(settings_env(settings))  # create_app reads the process's settings
            client = create_app(str(t.who.organization_id), str(target_id)).test_client()
            headers = {"Content-Type": "application/json"}
        else:
            client = build_app(settings).test_client()
            headers = t.headers
        body = json.dumps({"target_id": str(target_id), "suite": suite})

        def post() -> str:
            response = client.post(
                "/v1/certifications",
                data=body,
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code == 202, response.get_data(as_text=True)
            return str(response.get_json()["id"])

        yield settings, post
    finally:
        _drop_queues(bench.settings())
        bench.close()


def profiled(calls: list[Callable[[], Any]], what: str, argv: list[str]) -> list[Any]:
    """Run `calls` under pyinstrument (unless --bare); print wall and CPU time per call."""
    from pyinstrument import Profiler

    bare = "--bare" in argv
    profiler = Profiler(interval=0.0005)
    started, cpu = time.perf_counter(), time.process_time()
    if not bare:
        profiler.start()
    results = [call() for call in calls]
    if not bare:
        profiler.stop()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(calls)
    print(
        f"{n} {what}: {elapsed / n * 1000:.2f} ms wall, {cpu / n * 1000:.2f} ms CPU each"
        + ("" if bare else " (profiled)")
    )
    if not bare:
        print(profiler.output_text(unicode=False, color=False, show_all="--all" in argv))
    return results


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv and argv[0].isdigit() else 500
    with trivial_posts() as (_, post):
        for _ in range(20):  # warm-up: pools, imports, prepared caches
            post()
        profiled([post] * n, "requests", argv)


if __name__ == "__main__":
    main(sys.argv[1:])
