"""Configuration ranges and the one-line error at start."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from app.config import Settings, describe_validation_error
from tests.support.cli import config_error


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CERTIFICATION_CONCURRENCY", "0", "an integer from 1 to 50"),
        ("CERTIFICATION_CONCURRENCY", "51", "an integer from 1 to 50"),
        ("CERTIFICATION_TIMEOUT", "soon", "seconds from 10 to 3600"),
        ("CERTIFICATION_MAX_RETRIES", "11", "an integer from 0 to 10"),
        ("WORKER_HEALTH_PORT", "70000", "a port from 1 to 65535"),
        ("API_THREADS", "0", "an integer from 1 to 64"),
        ("DATABASE_URL", "mysql://db/x", "postgresql+psycopg"),
        ("REDIS_URL", "http://localhost:6379", "redis://"),
        ("FLOWER_BASIC_AUTH", "justuser", "user:password"),
    ],
)
def test_bad_value_names_variable_value_and_range(
    name: str, value: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    line = describe_validation_error(info.value)
    assert line.startswith(f"config error: {name}=")
    assert fragment in line
    assert "\n" not in line
    if name != "FLOWER_BASIC_AUTH":
        assert value in line
    else:
        assert value not in line  # secrets are never echoed


@pytest.mark.parametrize("command", ["api", "worker", "beat"])
@pytest.mark.parametrize(
    "env",
    [
        {"CERTIFICATION_CONCURRENCY": "0"},
        {"CERTIFICATION_CONCURRENCY": "51"},
        {"CERTIFICATION_TIMEOUT": "abc"},
        {"REDIS_URL": "not a url"},
    ],
)
def test_processes_exit_2_with_one_line(command: str, env: dict[str, str]) -> None:
    full = {
        **os.environ,
        "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        **env,
    }
    line = config_error([command], full)
    (name,) = env
    assert line.startswith(f"config error: {name}=")


def test_defaults_and_derived_limits() -> None:
    s = Settings(database_url="postgres://u@h/db", redis_url="redis://h:6379/0")
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.certification_concurrency == 3 and s.certification_timeout == 300
    assert s.certification_timeout < s.hard_time_limit < s.visibility_timeout
    assert s.max_attempts == s.certification_max_retries + 1
