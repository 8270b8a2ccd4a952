"""/v1/certifications/{id}/results and /evidence"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from app.api.certifications import CertificationPath
from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.schemas.resources import Problem
from app.schemas.results import EvidenceLine, ResultsView
from app.services import results

tag = Tag(name="results", description="Per-check results and per-sample evidence")
bp = APIBlueprint(
    "results",
    __name__,
    url_prefix="/v1/certifications",
    abp_tags=[tag],
    abp_security=[{"bearer": []}],
)
NDJSON = "application/x-ndjson"
EVIDENCE_RESPONSE = {
    "description": "One JSON object per line, one line per sample.",
    "content": {NDJSON: {"schema": EvidenceLine.model_json_schema()}},
}


@bp.get("/<certification_id>/results", responses={200: ResultsView, 401: Problem, 404: Problem})
def get_results(path: CertificationPath) -> Response:
    """Per-check counts, pass rate, Wilson bounds, threshold, outcome, duration, details."""
    cert_id = parse_id(path.certification_id, "certification")
    with deps().factory() as session:
        return json_response(results.results(session, principal(), cert_id))


@bp.get(
    "/<certification_id>/evidence", responses={200: EVIDENCE_RESPONSE, 401: Problem, 404: Problem}
)
def get_evidence(path: CertificationPath) -> Response:
    """Every stored sample as JSON lines, streamed (secrets redacted, excerpts truncated)."""
    cert_id = parse_id(path.certification_id, "certification")
    lines = results.evidence_lines(deps().factory, principal(), cert_id)
    return Response(
        lines,
        mimetype=NDJSON,
        headers={"Content-Disposition": f'inline; filename="{cert_id}.jsonl"'},
    )
