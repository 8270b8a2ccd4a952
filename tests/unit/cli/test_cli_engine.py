"""Pure parts of the certify/verify commands: capability parsing and exit codes."""

from __future__ import annotations

import click
import pytest

from app.certification.results import Verdict
from app.cli.certify import EXIT_CODES, parse_capability


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("streaming=true", ("streaming", True)),
        ("tools=no", ("tools", False)),
        ("context_length=8192", ("context_length", 8192)),
        ("embedding_model=text-embed-3", ("embedding_model", "text-embed-3")),
        ("embedding_model=none", ("embedding_model", None)),
    ],
)
def test_parse_capability(text: str, expected: tuple[str, object]) -> None:
    assert parse_capability(text) == expected


def test_parse_capability_needs_key_and_value() -> None:
    with pytest.raises(click.BadParameter):
        parse_capability("streaming")


def test_exit_codes() -> None:
    assert EXIT_CODES == {
        Verdict.CERTIFIED: 0,
        Verdict.CERTIFIED_WITH_WARNINGS: 0,
        Verdict.NOT_CERTIFIED: 1,
        Verdict.INCONCLUSIVE: 3,
    }
