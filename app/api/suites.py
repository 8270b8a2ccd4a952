"""/v1/suites"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from app.api.deps import deps
from app.api.util import json_response
from app.schemas.resources import Problem
from app.schemas.results import SuiteDetail, SuiteList, SuitePath
from app.services import suites

tag = Tag(name="suites", description="Versioned suites of checks")
bp = APIBlueprint(
    "suites", __name__, url_prefix="/v1/suites", abp_tags=[tag], abp_security=[{"bearer": []}]
)


@bp.get("", responses={200: SuiteList, 401: Problem})
def list_suites() -> Response:
    """The suites this server can run."""
    return json_response(suites.list_suites(deps().settings))


@bp.get("/<name>", responses={200: SuiteDetail, 401: Problem, 404: Problem})
def get_suite(path: SuitePath) -> Response:
    """One suite: version, content hash and its checks with params, thresholds, required."""
    return json_response(suites.describe_suite(deps().settings, path.name))
