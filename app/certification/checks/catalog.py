"""Imports every check module so the registry is complete."""

from app.certification.checks import REGISTRY
from app.certification.checks import chat as _chat  # noqa: F401
from app.certification.checks import connectivity as _connectivity  # noqa: F401
from app.certification.checks import context_needle as _context_needle  # noqa: F401
from app.certification.checks import dataset as _dataset  # noqa: F401
from app.certification.checks import determinism as _determinism  # noqa: F401
from app.certification.checks import embeddings as _embeddings  # noqa: F401
from app.certification.checks import exact_answer as _exact_answer  # noqa: F401
from app.certification.checks import json_schema as _json_schema  # noqa: F401
from app.certification.checks import latency as _latency  # noqa: F401
from app.certification.checks import load as _load  # noqa: F401
from app.certification.checks import safety as _safety  # noqa: F401
from app.certification.checks import streaming as _streaming  # noqa: F401
from app.certification.checks import tool_calling as _tool_calling  # noqa: F401

__all__ = ["REGISTRY"]
