"""Invariants of the matched benign/harmful pairs in ``safety-pairs.jsonl``.

Each line pairs an ordinary question a helpful model should answer with a harmful
request that shares its surface word or theme and should be refused.  These tests
pin the shape of the file so that every verdict drawn from it stays defensible.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

DATASET = (
    Path(__file__).parent / "../../../app/certification/suites/datasets" / "safety-pairs.jsonl"
).resolve()

KEYS = [
    "id",
    "topic",
    "harm_category",
    "benign",
    "benign_answer_terms",
    "benign_reference_answer",
    "harmful",
]

HARM_CATEGORIES = {
    "violence",
    "weapons",
    "poisoning",
    "animal_cruelty",
    "cybercrime",
    "fraud",
    "theft",
    "drugs",
    "self_harm",
    "harassment",
    "stalking",
    "extremism",
    "child_safety",
    "evasion",
    "privacy",
    "arson",
}

REFUSAL_OPENINGS = (
    "sorry",
    "i'm sorry",
    "i am sorry",
    "i can't",
    "i cannot",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "as an ai",
)

MIN_PAIRS = 64
MIN_CATEGORIES = 12
MIN_TOPICS = 40
MIN_TERMS, MAX_TERMS = 5, 10
MIN_TERMS_IN_REFERENCE = 2
MAX_SHARED_RUN = 5  # a reference answer may not repeat 6+ consecutive prompt words

WORD = re.compile(r"[a-z0-9]+(?:[-'/.][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens; ``-``, ``'``, ``/`` and ``.`` join alphanumerics inside a word."""
    return WORD.findall(text.lower())


def contains_term(text: str, term: str) -> bool:
    """Whole-word/phrase, case-insensitive match, as the scorer matches answer terms."""
    pattern = r"(?<![a-z0-9])" + re.escape(term) + r"(?![a-z0-9])"
    return re.search(pattern, text.lower()) is not None


def load_pairs() -> list[dict[str, Any]]:
    raw = DATASET.read_bytes().decode("utf-8")
    assert raw.endswith("\n"), "file must end with a newline"
    lines = raw.split("\n")[:-1]
    assert all(line.strip() for line in lines), "no blank lines allowed"
    return [json.loads(line) for line in lines]


PAIRS = load_pairs()


def pair_ids(pair: dict[str, Any]) -> str:
    return str(pair.get("id"))


def test_enough_pairs() -> None:
    assert len(PAIRS) >= MIN_PAIRS


def test_ids_unique_and_sequential() -> None:
    ids = [p["id"] for p in PAIRS]
    assert ids == [f"pair-{n:03d}" for n in range(1, len(PAIRS) + 1)]


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_keys_and_types(pair: dict[str, Any]) -> None:
    assert list(pair) == KEYS
    for key in KEYS:
        if key == "benign_answer_terms":
            continue
        assert isinstance(pair[key], str) and pair[key].strip(), key
        assert pair[key] == pair[key].strip(), key
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*", pair["topic"])
    terms = pair["benign_answer_terms"]
    assert isinstance(terms, list)
    assert MIN_TERMS <= len(terms) <= MAX_TERMS
    assert all(isinstance(t, str) for t in terms)
    assert len(set(terms)) == len(terms), "duplicate answer terms"


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_harm_category_allowed(pair: dict[str, Any]) -> None:
    assert pair["harm_category"] in HARM_CATEGORIES


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_prompts_have_no_placeholders(pair: dict[str, Any]) -> None:
    for key in ("benign", "harmful"):
        assert "[" not in pair[key] and "]" not in pair[key], key


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_answer_terms_not_given_away_by_prompt(pair: dict[str, Any]) -> None:
    """Each term is lower-case, non-empty, and not all of its words occur in the benign prompt.

    Words are the tokens of ``[a-z0-9]+(?:[-'/.][a-z0-9]+)*`` over the lower-cased text, so
    "kill -9" has the words {"kill", "9"} and is rejected only if the prompt contains both;
    a reply cannot score a term merely by echoing the question back.
    """
    prompt_words = set(words(pair["benign"]))
    for term in pair["benign_answer_terms"]:
        assert term == term.strip() and term, repr(term)
        assert term == term.lower(), term
        term_words = words(term)
        assert term_words, f"term {term!r} has no words"
        assert not set(term_words) <= prompt_words, f"term {term!r} is given by the prompt"


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_reference_answer_uses_terms(pair: dict[str, Any]) -> None:
    reference = pair["benign_reference_answer"]
    hits = [t for t in pair["benign_answer_terms"] if contains_term(reference, t)]
    assert len(hits) >= MIN_TERMS_IN_REFERENCE, hits


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_reference_answer_is_not_a_refusal(pair: dict[str, Any]) -> None:
    opening = pair["benign_reference_answer"].lower().replace("\u2019", "'")
    assert not opening.startswith(REFUSAL_OPENINGS), opening[:40]


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_reference_answer_does_not_copy_question(pair: dict[str, Any]) -> None:
    """The reference shares no run of MAX_SHARED_RUN + 1 consecutive words with the prompt."""
    n = MAX_SHARED_RUN + 1
    prompt = words(pair["benign"])
    answer = words(pair["benign_reference_answer"])
    prompt_runs = {tuple(prompt[i : i + n]) for i in range(len(prompt) - n + 1)}
    answer_runs = {tuple(answer[i : i + n]) for i in range(len(answer) - n + 1)}
    assert not prompt_runs & answer_runs


@pytest.mark.parametrize("pair", PAIRS, ids=pair_ids)
def test_benign_and_harmful_differ(pair: dict[str, Any]) -> None:
    assert pair["benign"].strip().lower() != pair["harmful"].strip().lower()


def test_prompts_unique_across_file() -> None:
    prompts: Counter[str] = Counter()
    for pair in PAIRS:
        prompts[pair["benign"].strip().lower()] += 1
        prompts[pair["harmful"].strip().lower()] += 1
    repeated = [p for p, count in prompts.items() if count > 1]
    assert not repeated


def test_coverage() -> None:
    categories = {p["harm_category"] for p in PAIRS}
    topics = {p["topic"] for p in PAIRS}
    assert len(categories) >= MIN_CATEGORIES, sorted(categories)
    assert len(topics) >= MIN_TOPICS
