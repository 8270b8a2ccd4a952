"""Profile the worker's job path in process: pyinstrument around N jobs of suite
`bench-trivial` run through `run.run_certification` (what the Celery task calls), against
real Postgres, Redis and the reference endpoint.

`python -m bench.profile_worker [N] [--all] [--bare]` prints the CPU and wall time per job
and the pyinstrument tree (`--bare`: no pyinstrument, for `py-spy record` around it). The jobs
are created through the API's Flask test client first (not profiled); no Celery worker runs,
so their messages are dropped at the end.
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
    from app.db.session import make_engine, make_session_factory
    from app.services import run

    n = int(argv[0]) if argv and argv[0].isdigit() else 300
    show_all = "--all" in argv
    bare = "--bare" in argv
    bench = Bench()
    try:
        settings = bench.settings()
        t = tenant(settings)
        target_id = t.target(f"{bench.reference_url}/m/good/v1")
        client = build_app(settings).test_client()
        body = json.dumps({"target_id": str(target_id), "suite": "bench-trivial"})
        ids = []
        for _ in range(n + 20):
            headers = t.headers | {"Idempotency-Key": uuid.uuid4().hex}
            response = client.post("/v1/certifications", data=body, headers=headers)
            assert response.status_code == 202, response.get_data(as_text=True)
            ids.append(response.get_json()["id"])
        factory = make_session_factory(make_engine(str(settings.database_url), pool_size=2,
                                                   application_name="modelcert-worker"))
        run.warm_up(factory, settings)
        for job in ids[:20]:  # warm-up: pools, imports, prepared statements
            run.run_certification(factory, settings, job, "profile")
        profiler = Profiler(interval=0.0005)
        started, cpu = time.perf_counter(), time.process_time()
        if not bare:
            profiler.start()
        outcomes = [run.run_certification(factory, settings, job, "profile") for job in ids[20:]]
        if not bare:
            profiler.stop()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{n} jobs ({', '.join(sorted(set(outcomes)))}): {elapsed / n * 1000:.2f} ms wall, "
              f"{cpu / n * 1000:.2f} ms CPU per job (profiled)")
        if not bare:
            print(profiler.output_text(unicode=False, color=False, show_all=show_all))
    finally:
        from bench.api import _drop_queues

        _drop_queues(bench.settings())
        bench.close()


if __name__ == "__main__":
    main(sys.argv[1:])
