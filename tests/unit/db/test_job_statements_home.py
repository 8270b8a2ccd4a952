"""Every statement about a job lives in the jobs repository (app/db/jobs.py): no service,
view or worker module builds SQL over a job's tables, fast paths included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# A job's tables, as the code names them (models, and the Core tables built from them).
JOB_TABLES = {"Certification", "CheckResultRow", "SampleRow", "DeadLetter", "_JOBS", "_CHECKS"}
# What builds or runs a statement: SQLAlchemy's constructs and a statement's clauses.
BUILDERS = {"select", "update", "insert", "delete", "exists", "text", "join", "where", "values"}
# Certificate statements that join the certificate to the job it certifies: their subject is
# the certificate (issued, superseded, current, expiring), so they stay with certificates.
CERTIFICATE_STATEMENTS = {
    "app/services/certificates.py",
    "app/services/recertify.py",
    "app/services/shares.py",
}


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
        str(p.relative_to(ROOT)): lines
        for p in modules
        if (lines := statements_over_job_tables(p))
        and str(p.relative_to(ROOT)) not in CERTIFICATE_STATEMENTS
    }
    assert found == {}, f"job SQL outside app/db/jobs.py (move it there): {found}"


def test_the_scan_sees_a_job_statement() -> None:
    """The scan finds what it looks for (here, in the repository itself)."""
    assert statements_over_job_tables(ROOT / "app/db/jobs.py")
