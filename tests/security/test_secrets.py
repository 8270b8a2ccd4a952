"""Secrets: write-only over the API, encrypted at rest, rotation with MultiFernet, the key
required in production and generated (0600) in development, and a key that cannot decrypt
fails the job with cause invalid_target."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import uuid

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from app.config import Settings
from app.db.models import Secret
from app.devtools.harness import BIN, settings_env
from app.services.secrets import SecretBox
from tests.support.cli import config_error
from tests.support.jobs import run_inline
from tests.support.rows import insert_target, job_row, new_org, queued_job


def test_value_is_never_returned(client, auth, factory) -> None:  # type: ignore[no-untyped-def]
    value = f"sk-{uuid.uuid4().hex}"
    r = client.post("/v1/secrets", json={"name": "openai", "value": value}, headers=auth)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v1/secrets/{r.get_json()['id']}"
    secret_id = r.get_json()["id"]
    assert set(r.get_json()) == {"id", "name", "created_at", "rotated_at"}
    responses = [
        r,
        client.get(f"/v1/secrets/{secret_id}", headers=auth),
        client.get("/v1/secrets", headers=auth),
        client.post("/v1/secrets", json={"name": "openai", "value": value}, headers=auth),
    ]
    assert responses[-1].status_code == 409
    for response in responses:
        assert value not in response.get_data(as_text=True)
    assert client.get("/v1/secrets", headers=auth).get_json()["items"][0]["id"] == secret_id
    with factory() as session:
        row = session.get(Secret, uuid.UUID(secret_id))
        assert value.encode() not in row.ciphertext
    assert client.delete(f"/v1/secrets/{secret_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/secrets/{secret_id}", headers=auth).status_code == 404
    assert client.delete(f"/v1/secrets/{secret_id}", headers=auth).status_code == 404


def test_secret_validation_does_not_echo_the_value(client, auth) -> None:  # type: ignore[no-untyped-def]
    value = f"canary-{uuid.uuid4().hex}"
    for body in (
        {"name": "", "value": value},
        {"name": "ok", "value": value * 1000},
        {"name": "ok", "value": value, "extra": value},
    ):
        r = client.post("/v1/secrets", json=body, headers=auth)
        assert r.status_code == 422, r.get_json()
        assert value not in r.get_data(as_text=True)


def test_rotation_reencrypts_with_the_newest_key(settings: Settings, factory) -> None:  # type: ignore[no-untyped-def]
    old = settings.modelcert_secret_key.get_secret_value()  # type: ignore[union-attr]
    new = Fernet.generate_key().decode()
    with factory() as session:
        before = {row.id: row.ciphertext for row in session.scalars(select(Secret))}
    env = settings_env(settings, MODELCERT_SECRET_KEY=f"{new},{old}")
    result = subprocess.run(
        [str(BIN / "modelcert"), "secrets", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "re-encrypted" in result.stdout
    new_only = SecretBox([new])
    with factory() as session:
        rows = session.scalars(select(Secret).where(Secret.id.in_(before))).all()
        for row in rows:
            assert row.rotated_at is not None
            assert new_only.decrypt(row.ciphertext) == SecretBox([old]).decrypt(before[row.id])
    # Put the session's key back in front, so later tests decrypt as before.
    env = settings_env(settings, MODELCERT_SECRET_KEY=f"{old},{new}")
    assert (
        subprocess.run(
            [str(BIN / "modelcert"), "secrets", "rotate"], env=env, capture_output=True, timeout=60
        ).returncode
        == 0
    )


def test_production_without_a_key_exits_2(settings: Settings) -> None:
    seed = base64.b64encode(b"s" * 32).decode()  # a signing key, so only the secret key is missing
    env = settings_env(settings, MODELCERT_ENV="production", MODELCERT_SIGNING_KEY=seed)
    env.pop("MODELCERT_SECRET_KEY", None)
    assert "MODELCERT_SECRET_KEY" in config_error(["api"], env)


def test_bad_key_exits_2_without_echoing_it(settings: Settings) -> None:
    env = settings_env(settings, MODELCERT_SECRET_KEY="not-a-fernet-key-123")
    line = config_error(["worker"], env)
    assert "MODELCERT_SECRET_KEY" in line
    assert "not-a-fernet-key-123" not in line


def test_development_key_is_generated_once_owner_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = Settings(modelcert_data_dir=tmp_path / "data", modelcert_secret_key=None)
    first = base.require_secret_key()
    second = base.require_secret_key()
    key = first.modelcert_secret_key.get_secret_value()  # type: ignore[union-attr]
    assert key == second.modelcert_secret_key.get_secret_value()  # type: ignore[union-attr]
    Fernet(key.encode())
    path = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_undecryptable_secret_fails_the_job_as_invalid_target(
    factory, settings, reference_url
) -> None:  # type: ignore[no-untyped-def]
    _, who = new_org(factory)
    foreign_key = Fernet.generate_key().decode()
    with factory() as session, session.begin():
        secret = Secret(
            organization_id=who.organization_id,
            name="k",
            ciphertext=SecretBox([foreign_key]).encrypt("reference-key"),
        )
        session.add(secret)
        session.flush()
        secret_id = secret.id
    cert = queued_job(
        factory, settings, who, insert_target(factory, who, f"{reference_url}/m/auth/v1", secret_id)
    )
    assert run_inline(factory, settings, cert, "secret-test") == "failed"
    row = job_row(factory, cert)
    assert row.error_cause == "invalid_target"
    assert "MODELCERT_SECRET_KEY" in (row.error_message or "")
    # The same job with the key listed (as during a rotation) runs.
    rotated = settings.model_copy(
        update={
            "modelcert_secret_key": SecretStr(
                f"{settings.modelcert_secret_key.get_secret_value()},{foreign_key}"
            )
        }
    )  # type: ignore[union-attr]
    cert = queued_job(
        factory, rotated, who, insert_target(factory, who, f"{reference_url}/m/auth/v1", secret_id)
    )
    assert run_inline(factory, rotated, cert, "secret-test") == "succeeded"
