"""Signing keys: the development key file, MODELCERT_SIGNING_KEY rotation, production refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.certification import certificates as certs
from app.config import Settings, describe_validation_error
from app.services.signing import KEY_FILE, signer_for
from tests.support.cli import config_error


def test_development_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(modelcert_data_dir=tmp_path)
    first = signer_for(settings)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signer_for(Settings(modelcert_data_dir=tmp_path)).key_id == first.key_id
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_the_key_file_is_found_once_per_process_and_directory(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    first = signer_for(Settings(modelcert_data_dir=Path("data")))
    # The same directory spelled otherwise: resolved to the same file, the same key.
    assert signer_for(Settings(modelcert_data_dir=tmp_path / "data")).key_id == first.key_id

    def no_file_system(self: Path, strict: bool = False) -> Path:
        raise AssertionError("a signature looked at the file system")

    with monkeypatch.context() as patched:
        patched.setattr(Path, "resolve", no_file_system)
        assert signer_for(Settings(modelcert_data_dir=Path("data"))).key_id == first.key_id
    # A relative directory is still taken from the current one.
    (tmp_path / "elsewhere" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert signer_for(Settings(modelcert_data_dir=Path("data"))).key_id != first.key_id


def test_rotation_newest_signs_and_older_keys_stay_published(tmp_path: Path) -> None:
    old, new = certs.generate_seed(), certs.generate_seed()
    signer = signer_for(
        Settings(modelcert_signing_key=f"{new}, {old}", modelcert_data_dir=tmp_path)
    )
    assert signer.key_id == certs.key_id_for(certs.public_key_b64(certs.load_private_key(new)))
    assert len(signer.public_keys) == 2
    assert not (tmp_path / KEY_FILE).exists()  # a configured key never touches the file


@pytest.mark.parametrize("value", ["not base64!", "c2hvcnQ=", f"{'A' * 43}=,x"])
def test_malformed_keys_are_a_config_error(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(modelcert_signing_key=value)
    line = describe_validation_error(info.value)
    assert line.startswith("config error: MODELCERT_SIGNING_KEY=<hidden>") and "\n" not in line
    assert value not in line


def test_production_worker_without_a_signing_key_exits_2_with_one_line(tmp_path: Path) -> None:
    """Only the worker signs, so only the worker needs the key (tests/security/
    test_signing_key_split.py starts the other processes without it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELCERT_")}
    env.update(
        MODELCERT_ENV="production",
        MODELCERT_DATA_DIR=str(tmp_path),
        MODELCERT_SECRET_KEY="bW9kZWxjZXJ0LWRlcGxveS10ZXN0LWR1bW15LWtleSE=",
        DATABASE_URL="postgresql://u@127.0.0.1:1/x",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    line = config_error(["worker"], env)
    assert line.startswith("config error: MODELCERT_SIGNING_KEY is not set")
    assert "allowed: base64 32-byte Ed25519 seeds" in line
    assert Settings(modelcert_env="production")  # valid settings for every other process
    seed = certs.generate_seed()
    production = Settings(modelcert_env="production", modelcert_signing_key=seed)
    assert production.require_signing_key() is production


def test_a_signer_signs_with_its_own_key_id_and_refuses_another(tmp_path: Path) -> None:
    signer = signer_for(Settings(modelcert_data_dir=tmp_path))
    payload = {"key_id": signer.key_id, "verdict": "certified"}
    document = signer.sign(payload)
    assert document == certs.sign(payload, signer.private_key)  # the key id it derives
    with pytest.raises(ValueError, match="is not the signer's"):
        certs.sign({"key_id": "0" * 16}, signer.private_key, signer.key_id)


def test_the_development_key_is_read_once_per_process(tmp_path: Path) -> None:
    first = signer_for(Settings(modelcert_data_dir=tmp_path))
    (tmp_path / KEY_FILE).write_text(certs.generate_seed() + "\n")  # never done in practice
    assert signer_for(Settings(modelcert_data_dir=tmp_path)).key_id == first.key_id
