"""Certificates and the public signing keys."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from app.api.certifications import CertificationPath
from app.api.deps import deps, principal
from app.api.targets import TargetPath
from app.api.util import json_response, parse_id
from app.schemas.resources import Problem
from app.schemas.results import CertificateView, SigningKeyList, TargetCertificateQuery
from app.services import certificates

tag = Tag(name="certificates", description="Signed certificates and the keys to verify them")
bp = APIBlueprint("certificates", __name__, abp_tags=[tag], abp_security=[{"bearer": []}])
keys_bp = APIBlueprint("signing_keys", __name__, abp_tags=[tag])  # public: no token needed
SIGNING_KEYS_PATH = "/v1/signing-keys"


@bp.get(
    "/v1/certifications/<certification_id>/certificate",
    operation_id="getCertificationCertificate",
    responses={200: CertificateView, 401: Problem, 404: Problem},
)
def certification_certificate(path: CertificationPath) -> Response:
    """The signed certificate of a succeeded certification (any verdict); 404 before that."""
    cert_id = parse_id(path.certification_id, "certification")
    with deps().factory() as session:
        return json_response(certificates.certificate_of(session, principal(), cert_id))


@bp.get(
    "/v1/targets/<target_id>/certificate",
    operation_id="getTargetCertificate",
    responses={200: CertificateView, 401: Problem, 404: Problem, 422: Problem},
)
def target_certificate(path: TargetPath, query: TargetCertificateQuery) -> Response:
    """The target's current certified certificate, per suite (`?suite=`): the newest of that
    suite when it is certified and not revoked, superseded or expired. Without a suite, the
    strongest suite's; 404 says why when there is none."""
    target_id = parse_id(path.target_id, "target")
    with deps().factory() as session:
        return json_response(
            certificates.current_of_target(
                session, principal(), target_id, query.region, query.suite
            )
        )


@keys_bp.get(SIGNING_KEYS_PATH, operation_id="listSigningKeys", responses={200: SigningKeyList})
def signing_keys() -> Response:
    """Every public key that may have signed a certificate: `modelcert verify --keys URL`."""
    with deps().factory() as session:
        return json_response(certificates.signing_keys(session))
