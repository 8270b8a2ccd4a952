"""The layering STYLE.md asks for: the core imports no framework; the API loads no worker code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = {
            m
            for m in imported_modules(path)
            if any(m == f or m.startswith(f + ".") for f in forbidden)
        }
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (
            "app/certification",
            (
                "flask",
                "flask_openapi3",
                "celery",
                "kombu",
                "sqlalchemy",
                "app.db",
                "app.services",
                "app.api",
                "worker",
            ),
        ),
        ("app/api", ("worker", "celery.worker")),
        ("app/services", ("flask", "flask_openapi3", "worker")),
    ],
)
def test_layering(package: str, forbidden: tuple[str, ...]) -> None:
    assert offenders(package, forbidden) == {}
