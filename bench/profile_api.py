"""Profile `POST /v1/certifications` in process: pyinstrument around N requests through the
Flask test client (same app as gunicorn runs) against real Postgres and Redis.

`python -m bench.profile_api [N] [--all]` prints the per-request time and the pyinstrument tree.
No worker runs, so the messages pile up in a private queue (dropped at the end).
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from bench.common import tenant
from bench.stack import Bench


def main(argv: list[str]) -> None:
    from pyinstrument import Profiler

    from app.api.factory import build_app

    n = int(argv[0]) if argv and argv[0].isdigit() else 500
    show_all = "--all" in argv
    bench = Bench()
    try:
        settings = bench.settings()
        t = tenant(settings)
        target_id = t.target(f"{bench.reference_url}/m/good/v1")
        client = build_app(settings).test_client()
        body = json.dumps({"target_id": str(target_id), "suite": "bench-trivial"})

        def post() -> None:
            headers = t.headers | {"Idempotency-Key": uuid.uuid4().hex}
            response = client.post("/v1/certifications", data=body, headers=headers)
            assert response.status_code == 202, response.get_data(as_text=True)

        for _ in range(20):  # warm-up: pools, imports, prepared caches
            post()
        profiler = Profiler(interval=0.0005)
        started = time.perf_counter()
        profiler.start()
        for _ in range(n):
            post()
        profiler.stop()
        elapsed = time.perf_counter() - started
        print(f"{n} requests, {elapsed / n * 1000:.2f} ms per request (profiled)")
        print(profiler.output_text(unicode=False, color=False, show_all=show_all))
    finally:
        from bench.api import _drop_queues

        _drop_queues(bench.settings())
        bench.close()


if __name__ == "__main__":
    main(sys.argv[1:])
