"""Exact-answer normalisation: case, punctuation, whitespace, articles, number words."""

from __future__ import annotations

import pytest

from app.certification.checks.normalize import matches, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("  PARIS.  ", "paris"),
        ("The Pacific Ocean!", "pacific ocean"),
        ("an apple", "apple"),
        ("forty-two", "42"),
        ("Forty two", "42"),
        ("one hundred and five", "105"),
        ("one thousand", "1000"),
        ("1,000", "1000"),
        ("2.5", "2.5"),
        ("zero", "0"),
        ("Buenos   Aires", "buenos aires"),
        ("rock and roll", "rock and roll"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_matches_accepts_aliases_and_number_words() -> None:
    assert matches("Twelve.", ["12"])
    assert matches("CO2", ["carbon dioxide", "CO2"])
    assert matches("the heart", ["heart"])


def test_matches_is_exact_not_contains() -> None:
    assert not matches("Paris or Lyon", ["Paris"])
    assert not matches("The capital of France is Paris.", ["Paris"])
    assert not matches("", ["Paris"])
