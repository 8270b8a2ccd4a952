"""CI runs the README's test command as a newcomer does (issue: bare-machine make test)."""

from __future__ import annotations

from tests.support.deploy import ROOT


def commands(path):  # type: ignore[no-untyped-def]
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_make_test_on_embedded_servers() -> None:
    steps = commands(ROOT / ".ci/run")
    assert steps[0] == "set -euo pipefail"
    assert "unset DATABASE_URL REDIS_URL" in steps
    assert steps[-1] == "make test"
    assert not [s for s in steps if "export" in s or "pg_ctl" in s or "redis-server" in s]


def test_the_readme_names_the_same_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
