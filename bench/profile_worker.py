"""Profile the worker's job path in process: pyinstrument around N jobs run through
`run.run_certification` (what the Celery task calls), against real Postgres, Redis and the
reference endpoint.

`python -m bench.profile_worker [N] [--all] [--bare] [--suite S] [--scope M] [--concurrency C]
[--stream]` prints the CPU and wall time per job and the pyinstrument tree (`--bare`: no
pyinstrument, for `py-spy record` around it). By default the jobs are e2e's (`bench-trivial`
against mode `good`); `--suite bench-latency --scope slow-200` profiles what client_overhead
measures, 2,000 requests at the target's concurrency C (64), not streamed unless `--stream`.
The jobs are created through the API's Flask test client first (not profiled); no Celery
worker runs, so their messages are dropped at the end.
"""

from __future__ import annotations

import functools
import sys

from bench.profile_api import profiled, trivial_posts


def run_one(run_certification, factory, settings, cert_id, worker, hooks):  # type: ignore[no-untyped-def]
    return run_certification(factory, settings, cert_id, worker, hooks)


def _option(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv[:-1] else default


def main(argv: list[str]) -> None:
    from app.db.session import make_engine, make_session_factory
    from app.services import run

    n = int(argv[0]) if argv and argv[0].isdigit() else 300
    suite = _option(argv, "--suite", "bench-trivial")
    warm = 20 if suite == "bench-trivial" else 2
    scope = _option(argv, "--scope", "good")
    # client_overhead's job concurrency; the trivial job makes one request at a time anyway
    concurrency = int(_option(argv, "--concurrency", "64"))
    # As client_overhead's target: no streaming unless asked (--stream)
    with trivial_posts(
        suite=suite, scope=scope, max_concurrency=concurrency, streaming="--stream" in argv
    ) as (settings, post):
        ids = [post() for _ in range(n + warm)]
        factory = make_session_factory(
            make_engine(
                str(settings.database_url), pool_size=2, application_name="modelcert-worker"
            )
        )
        run.warm_up(factory, settings)
        from worker.lease import keeper_for

        hooks = run.RunHooks(lease=keeper_for(factory, settings.certification_lease_seconds))
        job = functools.partial(run_one, run.run_certification, factory, settings, hooks=hooks)
        for cert_id in ids[:warm]:  # warm-up: pools, imports, prepared statements
            job(cert_id, "profile")
        outcomes = profiled(
            [functools.partial(job, cert_id, "profile") for cert_id in ids[warm:]], "jobs", argv
        )
        print("outcomes:", ", ".join(sorted(set(outcomes))))


if __name__ == "__main__":
    main(sys.argv[1:])
