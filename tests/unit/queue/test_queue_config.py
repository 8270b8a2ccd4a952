"""Queue names come from the operator's settings, validated at start, and every one is
namespaced under CERTIFICATION_QUEUE_NAME: none can be a key kombu's Redis transport keeps for
itself (issue #22)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from app.config import KOMBU_KEYS, Settings, describe_validation_error
from tests.support.cli import config_error

ALLOWED_FORM = "comma-separated region=name pairs"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CERTIFICATION_QUEUE_NAME", "unacked", "keeps for itself"),
        ("CERTIFICATION_QUEUE_NAME", "unacked_index", "keeps for itself"),
        ("CERTIFICATION_QUEUE_NAME", "unacked_mutex", "keeps for itself"),
        ("CERTIFICATION_QUEUE_NAME", "_kombu.binding.certification", "starting with a letter"),
        ("CERTIFICATION_QUEUE_NAME", "certification:3", "starting with a letter"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1", ALLOWED_FORM),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=maintenance", "reserved"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=malformed", "reserved"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=eu,eu-west-1=us", "listed twice"),
        ("CERTIFICATION_REGION_QUEUES", "EU=eu", "region like eu-west-1"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=_kombu.binding.x", "not 1-63 of"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=a:b", "not 1-63 of"),
        ("CERTIFICATION_REGION_QUEUES", "eu-west-1=" + "q" * 64, "not 1-63 of"),
    ],
)
def test_bad_queue_settings_name_variable_value_and_form(
    name: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = describe_validation_error(info.value)
    assert line.startswith(f"config error: {name}={value!r} is invalid")
    assert fragment in line and "allowed: " in line and "\n" not in line


@pytest.mark.parametrize(
    "env",
    [
        {"CERTIFICATION_REGION_QUEUES": "eu-west-1=malformed"},
        {"CERTIFICATION_QUEUE_NAME": "unacked_index"},
    ],
)
@pytest.mark.parametrize("command", ["api", "worker", "migrate"])
def test_processes_exit_2_with_one_line(command: str, env: dict[str, str]) -> None:
    full = {
        **os.environ,
        "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **env,
    }
    line = config_error([command], full)
    (name,) = env
    assert line.startswith(f"config error: {name}=") and "allowed: " in line


def test_every_queue_is_namespaced_and_none_is_a_transport_key() -> None:
    settings = Settings(
        certification_queue_name="prod",
        certification_region_queues=" eu-west-1=eu , eu-central-1=eu,us-east-1=unacked_index,",
    )
    assert settings.region_queues == {
        "eu-west-1": "prod.eu",
        "eu-central-1": "prod.eu",
        "us-east-1": "prod.unacked_index",
    }
    assert settings.job_queues == ["prod", "prod.eu", "prod.unacked_index"]
    names = [*settings.job_queues, settings.maintenance_queue_name, settings.malformed_list_name]
    assert len(set(names)) == len(names)
    for name in names:
        assert name == "prod" or name.startswith("prod.")
        assert name not in KOMBU_KEYS and not name.startswith("_kombu")
    assert Settings().region_queues == {} and Settings().job_queues == ["certification"]


def test_worker_refuses_a_queue_the_operator_did_not_configure() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CERTIFICATION_REGION_QUEUES": "eu-west-1=eu",
    }
    for queues in (
        "unacked_index",
        "certification,unacked",
        "_kombu.binding.celery",
        "eu",
        "other.eu",
    ):
        line = config_error(["worker", "--queues", queues], env)
        assert line.startswith("config error: --queues=")
        assert "certification, certification.eu, certification.maintenance" in line
