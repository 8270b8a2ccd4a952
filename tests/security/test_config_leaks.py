"""The passwords in DATABASE_URL and REDIS_URL reach nothing an operator's tool or a tenant
reads: not the worker's Celery configuration as `celery inspect conf` and Flower's worker page
show it, not the worker's stats or report, not Flower's pages, not the worker's probes, and
not any API answer. Real worker and Flower processes, a Redis that requires its password and
a Postgres role that has one."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.devtools.harness import BIN, Proc, free_port, settings_env, start_redis_server, wait_http
from app.queue.publisher import make_publisher_app
from tests.support.rows import make_token
from tests.support.workers import node_name, queue_worker

DB_PASSWORD = f"dbpw{uuid.uuid4().hex}"
REDIS_PASSWORD = f"redispw{uuid.uuid4().hex}"
PASSWORDS = (DB_PASSWORD, REDIS_PASSWORD)
FLOWER_AUTH = ("operator", f"flowerpw{uuid.uuid4().hex[:12]}")


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="module")
def secret_settings(
    settings: Settings, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The session's database through a role with a password (accepted under trust and
    password authentication alike), and a private Redis that requires its password."""
    role = f"mc_pw_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'"))
        conn.execute(text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    port = free_port()
    redis_proc = start_redis_server(
        port, tmp_path_factory.mktemp("redis-pw"), password=REDIS_PASSWORD
    )
    try:
        yield settings.model_copy(
            update={
                "database_url": with_credentials(database_url, role, DB_PASSWORD),
                "redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0",
            }
        )
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


@pytest.fixture(scope="module")
def secret_worker(
    secret_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proc, int]]:
    proc, port = queue_worker(secret_settings, tmp_path_factory.mktemp("pw-worker") / "w.log")
    yield proc, port
    proc.stop()


def assert_no_password(where: str, content: str | bytes) -> None:
    data = content if isinstance(content, str) else content.decode(errors="replace")
    for password in PASSWORDS:
        assert password not in data, f"{where} shows a password: ...{_around(data, password)}..."


def _around(data: str, needle: str) -> str:
    at = data.index(needle)
    return data[max(0, at - 120) : at + len(needle) + 40]


def test_the_worker_answers_inspect_without_passwords(secret_settings, secret_worker) -> None:  # type: ignore[no-untyped-def]
    proc, _ = secret_worker
    node = node_name(proc)
    app = make_publisher_app(secret_settings)
    inspect = app.control.inspect(timeout=10, destination=[node])
    answers = {
        "conf": inspect.conf(),
        "conf with defaults": inspect.conf(with_defaults=True),
        "stats": inspect.stats(),
        "report": inspect.report(),
        "active_queues": inspect.active_queues(),
    }
    for what, answer in answers.items():
        assert answer and node in answer, f"no {what} answer from {node}: {answer}"
        assert_no_password(f"inspect {what}", json.dumps(answer, default=repr))
    # The inspection is real: the worker's own settings are in it, only the secrets are not.
    conf = answers["conf with defaults"][node]
    assert conf["task_default_queue"] == secret_settings.certification_queue_name
    assert "127.0.0.1" in conf["broker_url"]


def test_flower_pages_show_no_password(secret_settings, secret_worker, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    proc, _ = secret_worker
    node = node_name(proc)
    port = free_port()
    env = settings_env(
        secret_settings, FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH), FLOWER_PORT=str(port)
    )
    flower = Proc(
        [str(BIN / "modelcert"), "flower"], env, tmp_path_factory.mktemp("pw-flower") / "flower.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/workers", 60, status=401, proc=flower.popen)
        pages: dict[str, str] = {}
        for _ in range(60):  # until Flower has inspected the worker (its Config tab is there)
            pages = {
                path: httpx.get(f"{url}{path}", auth=FLOWER_AUTH, timeout=30).text
                for path in (
                    f"/worker/{node}",
                    "/api/workers?refresh=1",
                    "/workers",
                    "/broker",
                    "/tasks",
                )
            }
            if "task_default_queue" in pages[f"/worker/{node}"]:
                break
        assert "task_default_queue" in pages[f"/worker/{node}"], "Flower never showed its conf"
        for path, page in pages.items():
            assert_no_password(f"Flower {path}", page)
        assert_no_password("Flower's log", flower.output())
    finally:
        flower.stop()


def test_the_worker_probes_show_no_password(secret_worker) -> None:  # type: ignore[no-untyped-def]
    _, port = secret_worker
    for path in ("/live", "/ready", "/health", "/metrics", "/nope"):
        assert_no_password(
            f"worker {path}", httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10).content
        )


def test_no_api_answer_shows_a_password(secret_settings, factory) -> None:  # type: ignore[no-untyped-def]
    """Every route of the API, with and without a token, with an empty and a bad body."""
    from app import create_app

    api = create_app(secret_settings)
    client = api.test_client()
    token = {"Authorization": f"Bearer {make_token(factory, f'org-{uuid.uuid4().hex[:8]}')}"}
    answers = 0
    try:
        for rule in api.url_map.iter_rules():
            path = re.sub(r"<[^>]+>", str(uuid.uuid4()), rule.rule)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                for headers in ({}, token):
                    for body in ({"json": {}}, {"data": "{", "content_type": "application/json"}):
                        response = client.open(path, method=method, headers=headers, **body)
                        answers += 1
                        assert response.status_code < 500, (method, path, response.get_data())
                        assert_no_password(
                            f"{method} {path} ({response.status_code})",
                            response.get_data() + str(response.headers).encode(),
                        )
    finally:
        api.extensions["modelcert"].dispatch.close()
    assert answers > 50
