"""/v1/certifications/{id}/results and /evidence"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from app.api.certifications import CertificationPath
from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.schemas.resources import Problem
from app.schemas.results import ResultsView, SampleList, SampleQuery
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
# The body is a stream of lines, each an EvidenceLine: OpenAPI 3.1 has no schema for a line
# of a sequence (3.2's itemSchema), so it is declared as what it is on the wire, a document of
# its own media type, and the line's schema is named (`x-item-schema`). Generated clients read
# the same lines as JSON pages from listSamples (or map this media type to
# application/octet-stream: docs/api.md).
EVIDENCE_RESPONSE = {
    "description": "One JSON object (an EvidenceLine) per line, one line per sample, "
    "streamed; the same lines as JSON pages: GET …/samples (listSamples).",
    "content": {
        NDJSON: {
            "schema": {"type": "string", "format": "binary"},
            "x-item-schema": {"$ref": "#/components/schemas/EvidenceLine"},
        }
    },
}


@bp.get(
    "/<certification_id>/results",
    operation_id="getResults",
    responses={200: ResultsView, 401: Problem, 404: Problem},
)
def get_results(path: CertificationPath) -> Response:
    """Per-check counts, pass rate, Wilson bounds, threshold, outcome, duration, details."""
    cert_id = parse_id(path.certification_id, "certification")
    with deps().factory() as session:
        return json_response(results.results(session, principal(), cert_id))


@bp.get(
    "/<certification_id>/evidence",
    operation_id="getEvidence",
    responses={200: EVIDENCE_RESPONSE, 401: Problem, 404: Problem},
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


@bp.get(
    "/<certification_id>/samples",
    operation_id="listSamples",
    responses={200: SampleList, 401: Problem, 404: Problem, 422: Problem},
)
def list_samples(path: CertificationPath, query: SampleQuery) -> Response:
    """The evidence as JSON pages (the stream's lines, in its order), `?check=` for one check."""
    cert_id = parse_id(path.certification_id, "certification")
    with deps().factory() as session:
        items, cursor = results.list_samples(
            session, principal(), cert_id, query.check, query.cursor, query.limit
        )
    return json_response(SampleList(items=items, next_cursor=cursor))
