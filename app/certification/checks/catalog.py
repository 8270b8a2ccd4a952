"""Imports every check module so the registry is complete."""

from app.certification.checks import REGISTRY
from app.certification.checks import chat as _chat  # noqa: F401
from app.certification.checks import connectivity as _connectivity  # noqa: F401

__all__ = ["REGISTRY"]
