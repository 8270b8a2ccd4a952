"""`make lint`'s style and type checks, also in `make test` (CI runs only that): the tree is
formatted and lint-clean, and app/ and worker/ type-check (pyproject.toml [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ["app", "worker", "tests", "bench"]
RUFF = [sys.executable, "-m", "ruff"]
TYPED = ["app", "worker"]


def test_the_tree_is_formatted() -> None:
    result = subprocess.run(
        [*RUFF, "format", "--check", *TREES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tree_is_lint_clean() -> None:
    result = subprocess.run(
        [*RUFF, "check", *TREES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_runtime_packages_type_check() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *TYPED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
