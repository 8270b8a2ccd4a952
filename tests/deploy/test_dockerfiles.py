"""Dockerfiles, .dockerignore and the build script, checked statically (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from deploy_helpers import ROOT, settings_default

IMAGES = {
    "Dockerfile.api": (["modelcert", "api"], "API_PORT", ("/ready", "/live")),
    "Dockerfile.worker": (["modelcert", "worker"], "WORKER_HEALTH_PORT", ("/ready",)),
}


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        logical.append(current)
        current = ""
    result = []
    for line in logical:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def stages(path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instr in instructions(path):
        if instr[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instr)
    return out


@pytest.fixture(params=sorted(IMAGES))
def dockerfile(request):
    return request.param, ROOT / request.param


def test_multi_stage_with_a_builder(dockerfile):
    name, path = dockerfile
    all_stages = stages(path)
    assert len(all_stages) >= 2, f"{name} is not multi-stage"
    builder, final = all_stages[0], all_stages[-1]
    assert any("--require-hashes" in arg and "requirements.lock" in arg for _, arg in builder)
    final_text = " ".join(arg for _, arg in final)
    assert "build-essential" not in final_text and "gcc" not in final_text, (
        "no compilers at runtime"
    )
    assert "from=builder" in final_text, "the runtime takes the wheels from the builder"
    assert "PIP_NO_CACHE_DIR=1" in final_text or "--no-cache-dir" in final_text
    for word, arg in final:
        if word in {"COPY", "ADD"}:
            assert not re.match(r"^(--\S+\s+)*\.\s", arg), f"{name}: copy only what is needed"


def test_migrations_ship_where_modelcert_migrate_looks(dockerfile):
    """`modelcert migrate` reads alembic.ini and migrations/ beside the `app` package."""
    name, path = dockerfile
    final = stages(path)[-1]
    copies = " ".join(arg for word, arg in final if word == "COPY")
    assert "alembic.ini" in copies and "migrations" in copies, name
    assert any(word == "RUN" and "alembic.ini" in arg and "ROOT" in arg for word, arg in final)


def test_runs_as_a_non_root_user(dockerfile):
    name, path = dockerfile
    users = [arg for word, arg in stages(path)[-1] if word == "USER"]
    assert users, f"{name} has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"{name} runs as root"


def test_healthcheck_stopsignal_and_exec_form_cmd(dockerfile):
    name, path = dockerfile
    cmd, port_var, paths = IMAGES[name]
    final = dict(stages(path)[-1])
    assert final.get("STOPSIGNAL") == "SIGTERM"
    assert json.loads(final["CMD"]) == cmd, f"{name}: CMD must be exec form {cmd}"
    assert "ENTRYPOINT" not in final, "modelcert itself is PID 1"
    health = final["HEALTHCHECK"]
    assert "CMD [" in health and "curl" not in health and "urllib" in health
    port = settings_default(port_var)
    assert f"'{port}'" in health and port_var in health
    assert any(f"{p}'" in health for p in paths), f"{name} HEALTHCHECK probes {paths}"


def test_dockerignore_keeps_the_context_small():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "**" in lines or {".venv", ".git"} <= set(lines)
    for needed in ("requirements.lock", "pyproject.toml", "app/", "worker/", "migrations/"):
        assert f"!{needed}" in lines or "**" not in lines, needed


def test_build_script_bakes_both_images():
    script = ROOT / "scripts/build-images"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "buildx bake" in text
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    bake = (ROOT / "docker-bake.hcl").read_text()
    for name in IMAGES:
        assert f'"{name}"' in bake


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (`make tools` installs it)",
)
def test_shellcheck_accepts_the_shell_scripts():
    scripts = [ROOT / "scripts/build-images", ROOT / "scripts/install-test-tools", ROOT / ".ci/run"]
    result = subprocess.run(
        ["shellcheck", *map(str, scripts)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
