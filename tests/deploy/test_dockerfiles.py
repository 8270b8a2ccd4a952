"""Dockerfiles, .dockerignore and the build script, checked statically (no Docker engine here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.deploy import ROOT, settings_default

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
    assert any(
        "--require-hashes" in arg and "requirements-runtime.lock" in arg for _, arg in builder
    ), "the images install the runtime lock only (no test or lint tools)"
    final_text = " ".join(arg for _, arg in final)
    assert "build-essential" not in final_text and "gcc" not in final_text, (
        "no compilers at runtime"
    )
    assert "from=builder" in final_text, "the runtime takes the wheels from the builder"
    assert "PIP_NO_CACHE_DIR=1" in final_text or "--no-cache-dir" in final_text
    for word, arg in final:
        if word in {"COPY", "ADD"}:
            assert not re.match(r"^(--\S+\s+)*\.\s", arg), f"{name}: copy only what is needed"


def test_migrations_come_with_the_package(dockerfile):
    """The wheel ships app/db/migrations: nothing is copied beside it by hand, and the image
    checks that `modelcert migrate` finds them (tests/integration/test_wheel_install.py runs it)."""
    name, path = dockerfile
    final = stages(path)[-1]
    copies = " ".join(arg for word, arg in final if word == "COPY")
    assert "alembic.ini" not in copies and "migrations" not in copies, name
    assert any(word == "RUN" and "MIGRATIONS" in arg for word, arg in final), name


def test_base_images_are_pinned_by_digest(dockerfile):
    """Every FROM is an earlier stage or the PYTHON_IMAGE argument, whose default is pinned by
    digest and equal to docker-bake.hcl's."""
    name, path = dockerfile
    args = {
        key: value
        for word, arg in instructions(path)
        if word == "ARG" and "=" in arg
        for key, _, value in [arg.partition("=")]
    }
    image = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", image), image
    named: set[str] = set()
    for word, arg in instructions(path):
        if word != "FROM":
            continue
        parts = arg.split()
        base = next(p for p in parts if not p.startswith("--"))
        assert base == "${PYTHON_IMAGE}" or base in named, f"{name}: FROM {base} is not pinned"
        if "AS" in [p.upper() for p in parts]:
            named.add(parts[-1])
    bake = (ROOT / "docker-bake.hcl").read_text()
    default = re.search(r'variable "PYTHON_IMAGE" \{.*?default\s*=\s*"([^"]+)"', bake, re.S)
    assert default and default.group(1) == image, "docker-bake.hcl and the Dockerfiles differ"


def test_bake_builds_both_platforms_with_sbom_and_provenance():
    bake = (ROOT / "docker-bake.hcl").read_text()
    common = re.search(r'target "_common" \{(.*?)\n\}', bake, re.S)
    assert common, "docker-bake.hcl has no _common target"
    body = common.group(1)
    platforms = re.search(r"platforms\s*=\s*\[([^\]]*)\]", body)
    assert platforms and set(re.findall(r'"([^"]+)"', platforms.group(1))) == {
        "linux/amd64",
        "linux/arm64",
    }
    attest = re.search(r"attest\s*=\s*\[([^\]]*)\]", body)
    assert attest, "no attestations"
    kinds = re.findall(r'"type=(\w+)', attest.group(1))
    assert set(kinds) == {"sbom", "provenance"}, kinds
    for target in ("api", "worker"):
        assert re.search(rf'target "{target}" \{{[^}}]*inherits\s*=\s*\["_common"\]', bake)
    script = (ROOT / "scripts/build-images").read_text()
    assert "imagetools inspect" in script, "the script checks the base is a multi-platform index"


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
    for needed in ("requirements-runtime.lock", "pyproject.toml", "app/", "worker/"):
        assert f"!{needed}" in lines or "**" not in lines, needed
    assert "!requirements.lock" not in lines, "the images need the runtime lock only"


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


HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=os.path.dirname(sys.executable)
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (the dev lock has it)")
def test_hadolint_accepts_the_dockerfiles():
    """.hadolint.yaml says why each ignored rule is ignored."""
    result = subprocess.run(
        [HADOLINT, "--no-color", *IMAGES], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
