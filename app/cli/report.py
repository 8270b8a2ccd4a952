"""`modelcert report CERT_DIR`: the report page of a finished `modelcert certify --out` run as
one self-contained HTML file (styles and charts inside it, no script, nothing fetched), the
same page the API serves; `modelcert certify --html FILE` writes it at the end of a run."""

from __future__ import annotations

from pathlib import Path

import click

from app.reports.files import ReportInputError, report_from_dir
from app.reports.render import render_report


def write_report(cert_dir: Path, html_path: Path, previous: Path | None = None) -> Path:
    """Render CERT_DIR's report into `html_path` (ReportInputError: the directory is not a
    finished run's)."""
    report = report_from_dir(cert_dir, html_path, previous)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_report(report).html, encoding="utf-8")
    return html_path


@click.command("report")
@click.argument(
    "cert_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="CERT_DIR"
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write (default: CERT_DIR/report.html).",
)
@click.option(
    "--previous",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="An earlier run's directory of the same target and suite: what improved, what regressed.",
)
def report(cert_dir: Path, out: Path | None, previous: Path | None) -> None:
    """Write the report of a finished run (CERT_DIR holds certificate.json, keys.json and
    evidence.jsonl, as `modelcert certify --out` writes them)."""
    try:
        path = write_report(cert_dir, out or cert_dir / "report.html", previous)
    except ReportInputError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    click.echo(f"report: {path}")
