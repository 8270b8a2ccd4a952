"""A canary credential goes through a full certification on the real worker (the reference
endpoint in `auth` mode accepts only the canary), and then appears nowhere: not in Redis
(every key and value of the broker's database, message bodies decoded), not in the worker's
or the API's logs, not in Flower's task views, not in any database table (evidence,
certificates, results...; the secret itself only encrypted), not in any API response."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text

from app.config import Settings
from app.devtools.harness import BIN, Proc, free_port, settings_env, wait_http
from tests.support.api import certify, wait_terminal

CANARY = f"canary-{uuid.uuid4().hex}"
FLOWER_AUTH = ("flower", f"pw-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def canary_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    env = {**os.environ, "REFERENCE_API_KEY": CANARY}
    proc = Proc(
        [str(BIN / "modelcert"), "reference-endpoint", "--port", str(port)],
        env,
        tmp_path_factory.mktemp("canary-ref") / "ref.log",
    ).start()
    wait_http(f"http://127.0.0.1:{port}/_health", 30, proc=proc.popen)
    yield f"http://127.0.0.1:{port}", proc
    proc.stop()


@pytest.fixture(scope="module")
def flower(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Proc]]:
    port = free_port()
    env = settings_env(settings, FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH), FLOWER_PORT=str(port))
    proc = Proc(
        [str(BIN / "modelcert"), "flower"], env, tmp_path_factory.mktemp("flower") / "flower.log"
    ).start()
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/workers", 60, status=401, proc=proc.popen)  # up, and behind auth
    yield url, proc
    proc.stop()


def redis_dump(url: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for every key of the database, whatever its type."""
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == b"zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"stream":
            values = [
                json.dumps({k.decode(): v.decode(errors="replace") for k, v in f.items()}).encode()
                for _, f in client.xrange(key)
            ]
        else:
            values = []
        for value in values:
            yield key, value


def decoded_forms(raw: bytes) -> Iterator[bytes]:
    """The bytes, and any base64 or JSON-embedded base64 inside (kombu message bodies)."""
    yield raw
    try:
        doc: Any = json.loads(raw)
    except ValueError:
        return
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and len(item) >= 16:
            try:
                inner = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                continue
            yield inner
            yield from decoded_forms(inner)


def test_the_redis_scan_sees_inside_message_bodies() -> None:
    body = base64.b64encode(json.dumps([[CANARY], {}, {}]).encode()).decode()
    envelope = json.dumps({"body": body, "headers": {}, "properties": {}}).encode()
    assert any(CANARY.encode() in form for form in decoded_forms(envelope))
    assert CANARY.encode() not in envelope


def test_canary_credential_appears_nowhere(
    app, client, auth, settings, factory, worker, canary_endpoint, flower, caplog
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    base, _ = canary_endpoint
    flower_url, flower_proc = flower
    responses: list[httpx.Response | Any] = []

    def keep(response):  # type: ignore[no-untyped-def]
        responses.append(response)
        return response

    secret = keep(
        client.post("/v1/secrets", json={"name": "canary", "value": CANARY}, headers=auth)
    )
    assert secret.status_code == 201
    secret_id = secret.get_json()["id"]
    # Error paths that carry the canary in the request.
    assert (
        keep(
            client.post("/v1/secrets", json={"name": "canary", "value": CANARY}, headers=auth)
        ).status_code
        == 409
    )
    assert (
        keep(
            client.post("/v1/secrets", json={"name": "x", "value": CANARY * 300}, headers=auth)
        ).status_code
        == 422
    )
    assert (
        keep(
            client.post("/v1/secrets", json={"name": CANARY + "!", "value": CANARY}, headers=auth)
        ).status_code
        == 422
    )
    assert (
        keep(
            client.post(
                "/v1/secrets",
                data=f'{{"name": "y", "value": "{CANARY}"',
                content_type="application/json",
                headers=auth,
            )
        ).status_code
        == 400
    )
    assert (
        keep(
            client.post(
                "/v1/targets",
                json={
                    "name": "leaky",
                    "model": "m",
                    "base_url": f"http://user:{CANARY}@127.0.0.1/v1",
                },
                headers=auth,
            )
        ).status_code
        == 422
    )
    keep(client.get(f"/v1/secrets/{secret_id}", headers=auth))
    keep(client.get("/v1/secrets", headers=auth))

    target = keep(
        client.post(
            "/v1/targets",
            json={
                "name": "canary-target",
                "model": "reference-model",
                "base_url": f"{base}/m/auth/v1",
                "secret_id": secret_id,
            },
            headers=auth,
        )
    )
    assert target.status_code == 201
    cert_id = certify(client, auth, target.get_json()["id"])
    cert = wait_terminal(client, auth, cert_id, timeout=120)
    assert cert["status"] == "succeeded", cert  # the canary was the key the endpoint accepted
    keep(client.get(f"/v1/certifications/{cert_id}", headers=auth))
    keep(client.get("/v1/certifications", headers=auth))
    keep(client.get(f"/v1/targets/{target.get_json()['id']}", headers=auth))
    evidence = client.get(f"/v1/certifications/{cert_id}/evidence", headers=auth)
    if evidence.status_code != 404:
        assert evidence.status_code == 200
        keep(evidence)

    # Flower saw the task (its events), and shows no canary.
    task_id = None
    for _ in range(100):
        tasks = httpx.get(f"{flower_url}/api/tasks", auth=FLOWER_AUTH, timeout=10)
        assert tasks.status_code == 200
        task_id = next(
            (tid for tid, t in tasks.json().items() if cert_id in str(t.get("args"))), None
        )
        if task_id:
            break
        time.sleep(0.3)
    assert task_id, "Flower never saw the certification task"
    flower_pages = [
        tasks.text,
        httpx.get(f"{flower_url}/task/{task_id}", auth=FLOWER_AUTH, timeout=10).text,
        httpx.get(f"{flower_url}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10).text,
    ]
    assert cert_id in flower_pages[1]
    assert httpx.get(f"{flower_url}/api/tasks", timeout=10).status_code == 401

    canary = CANARY.encode()
    # 1. API responses.
    for response in responses:
        assert canary not in response.get_data(), (response.status_code, response.get_data())
    # 2. Redis: every key and value of the broker database.
    seen = 0
    for key, value in redis_dump(str(settings.redis_url)):
        seen += 1
        assert canary not in key, key
        for form in decoded_forms(value):
            assert canary not in form, (key, value[:300])
    assert seen > 0
    # 3. Logs: the worker's, the API's (this process), Flower's.
    assert CANARY not in worker.output()
    assert cert_id in worker.output()
    api_log = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert CANARY not in api_log
    assert CANARY not in flower_proc.output()
    # 4. Flower's task views.
    for page in flower_pages:
        assert CANARY not in page
    # 5. Every table of the database (evidence, results, certificates, jobs, dead letters...).
    with factory() as session:
        tables = session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
        assert {"samples", "certificates", "check_results"} <= set(tables)
        samples = 0
        for table in tables:
            for row in session.scalars(text(f'SELECT row_to_json(t)::text FROM "{table}" t')):
                assert CANARY not in row, (table, row[:300])
                samples += table == "samples"
        assert samples > 0
