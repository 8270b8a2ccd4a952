"""`modelcert suites validate FILE`: check a suite document with no server.

Exit codes: 0 valid (its name@version and content hash are printed: the server computes
the same hash for the same suite), 2 invalid or over a size limit (each error on its own
line, with its path and line).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from app.certification.suites import SuiteError, SuiteInvalid, describe_error
from app.certification.suites.documents import load_path


@click.group("suites")
def suites_group() -> None:
    """Suites a team brings: validate them before uploading or running them."""


@suites_group.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file: Path, as_json: bool) -> None:
    """Validate a suite document (YAML, or JSON for a .json file) and the dataset files it
    names beside it."""
    try:
        suite = load_path(file)
    except SuiteInvalid as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "errors": exc.errors}))
        else:
            for error in exc.errors:
                click.echo(f"{file}: {describe_error(error)}", err=True)
        raise click.exceptions.Exit(2) from None
    except SuiteError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "errors": [{"loc": [], "msg": str(exc)}]}))
        else:
            click.echo(f"{file}: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    rows = {name: len(rows) for name, rows in suite.data.items()}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": True,
                    "suite": suite.ref,
                    "content_hash": suite.content_hash,
                    "checks": [c.key for c in suite.definition.checks],
                    "datasets": rows,
                }
            )
        )
        return
    datasets = ", ".join(f"{name} ({count} rows)" for name, count in rows.items()) or "none"
    click.echo(f"valid: {suite.ref} {suite.content_hash}")
    click.echo(f"  checks: {', '.join(c.key for c in suite.definition.checks)}")
    click.echo(f"  datasets: {datasets}")
