"""The operator and user documentation exists and says what it must."""

from __future__ import annotations

import pytest

from tests.support.deploy import ROOT

DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text()


@pytest.mark.parametrize(
    "name",
    [
        "architecture.md",
        "getting-started.md",
        "api.md",
        "methodology.md",
        "configuration.md",
        "operations.md",
        "security.md",
    ],
)
def test_doc_exists(name):
    assert len(read(name)) > 500, name


def test_architecture_has_a_mermaid_diagram():
    assert "```mermaid" in read("architecture.md")


def test_getting_started_order():
    text = read("getting-started.md")
    positions = [text.index(s) for s in ("make run", "make test", "scripts/test-worker")]
    assert positions == sorted(positions)
    assert "/v1/targets" in text and "/v1/certifications" in text and "curl" in text


@pytest.mark.parametrize(
    "needle",
    [
        "/v1/targets",
        "/v1/certifications",
        "/results",
        "/evidence",
        "/certificate",
        "/cancel",
        "/retry",
        "/v1/dead-letters",
        "/replay",
        "/v1/signing-keys",
        "Authorization: Bearer",
    ],
)
def test_api_doc_covers(needle):
    assert needle in read("api.md")


@pytest.mark.parametrize(
    "needle", ["Wilson", "inconclusive", "errored", "Ed25519", "canonical JSON", "modelcert verify"]
)
def test_methodology_covers(needle):
    assert needle in read("methodology.md")


@pytest.mark.parametrize(
    "needle", ["Scaling", "Draining", "Dead letters", "Rotating keys", "Troubleshooting"]
)
def test_operations_covers(needle):
    assert needle in read("operations.md")
