"""Every statement about a job or a certificate lives in its repository (app/db/jobs.py,
app/db/certificates.py): no service, view or worker module builds SQL over their tables,
fast paths included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# A job's and a certificate's tables, as the code names them (models, and the Core tables
# built from them).
JOB_TABLES = {
    "Certification",
    "CheckResultRow",
    "SampleRow",
    "DeadLetter",
    "Certificate",
    "_JOBS",
    "_CHECKS",
    "_CERTS",
}
# What builds or runs a statement: SQLAlchemy's constructs and a statement's clauses.
BUILDERS = {"select", "update", "insert", "delete", "exists", "text", "join", "where", "values"}


def statements_over_job_tables(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name not in BUILDERS:
            continue
        arguments = [*node.args, *(k.value for k in node.keywords)]
        used = {n.id for a in arguments for n in ast.walk(a) if isinstance(n, ast.Name)}
        texts = [
            n.value
            for a in arguments
            for n in ast.walk(a)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        ]
        if used & JOB_TABLES or any("FROM certifications" in t for t in texts):
            lines.append(node.lineno)
    return lines


def test_no_job_statement_outside_the_repository() -> None:
    modules = [
        p
        for folder in ("app/services", "app/api", "worker")
        for p in sorted((ROOT / folder).rglob("*.py"))
    ]
    found = {
        str(p.relative_to(ROOT)): lines for p in modules if (lines := statements_over_job_tables(p))
    }
    assert found == {}, f"job or certificate SQL outside their repositories: {found}"


def test_the_scan_sees_a_job_statement() -> None:
    """The scan finds what it looks for (here, in the repositories themselves)."""
    assert statements_over_job_tables(ROOT / "app/db/jobs.py")
    assert statements_over_job_tables(ROOT / "app/db/certificates.py")
