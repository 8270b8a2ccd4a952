"""Profile the worker's job path in process: pyinstrument around N jobs of suite
`bench-trivial` run through `run.run_certification` (what the Celery task calls), against
real Postgres, Redis and the reference endpoint.

`python -m bench.profile_worker [N] [--all] [--bare]` prints the CPU and wall time per job
and the pyinstrument tree (`--bare`: no pyinstrument, for `py-spy record` around it). The jobs
are created through the API's Flask test client first (not profiled); no Celery worker runs,
so their messages are dropped at the end.
"""

from __future__ import annotations

import functools
import sys

from bench.profile_api import profiled, trivial_posts


def run_one(run_certification, factory, settings, cert_id, worker, hooks):  # type: ignore[no-untyped-def]
    return run_certification(factory, settings, cert_id, worker, hooks)


def main(argv: list[str]) -> None:
    from app.db.session import make_engine, make_session_factory
    from app.services import run

    n = int(argv[0]) if argv and argv[0].isdigit() else 300
    with trivial_posts() as (settings, post):
        ids = [post() for _ in range(n + 20)]
        factory = make_session_factory(
            make_engine(
                str(settings.database_url), pool_size=2, application_name="modelcert-worker"
            )
        )
        run.warm_up(factory, settings)
        from worker.lease import keeper_for

        hooks = run.RunHooks(lease=keeper_for(factory, settings.certification_lease_seconds))
        job = functools.partial(run_one, run.run_certification, factory, settings, hooks=hooks)
        for cert_id in ids[:20]:  # warm-up: pools, imports, prepared statements
            job(cert_id, "profile")
        outcomes = profiled(
            [functools.partial(job, cert_id, "profile") for cert_id in ids[20:]], "jobs", argv
        )
        print("outcomes:", ", ".join(sorted(set(outcomes))))


if __name__ == "__main__":
    main(sys.argv[1:])
