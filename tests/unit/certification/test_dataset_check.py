"""The `dataset` check of a team's own suite: templates, graders, loading (pure)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.certification.checks import CheckContext, TargetSpec
from app.certification.checks.catalog import REGISTRY
from app.certification.checks.graders import chosen_letters, parse_number, regex_problem
from app.certification.checks.template import TemplateError, fields, render, value
from app.certification.providers.base import ChatRequest
from app.certification.results import Grade, Sample
from app.certification.suites import SuiteInvalid, SuiteTooLarge
from app.certification.suites.documents import MAX_DOCUMENT_BYTES, load_document, load_path
from tests.support.providers import FakeProvider

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "suites"


def document(check: dict[str, Any], rows: list[dict[str, Any]], **extra: Any) -> bytes:
    return yaml.safe_dump(
        {
            "name": "mine",
            "version": "1.0.0",
            "datasets": {"rows": {"rows": rows}},
            "checks": [{"name": "dataset", **check}],
            **extra,
        },
        sort_keys=False,
    ).encode()


def params(grader: dict[str, Any], user: str = "{question}", **more: Any) -> dict[str, Any]:
    return {"params": {"dataset": "rows", "prompt": {"user": user}, "grader": grader, **more}}


def errors_of(raw: bytes, files: dict[str, bytes] | None = None) -> list[dict[str, Any]]:
    with pytest.raises(SuiteInvalid) as caught:
        load_document(raw, "yaml", files)
    return caught.value.errors


def run(raw: bytes, answer: Any) -> tuple[list[Sample], FakeProvider]:
    suite = load_document(raw)
    entry = suite.definition.checks[0]
    provider = FakeProvider(answer)
    ctx = CheckContext(provider=provider, target=TargetSpec("fake", "m", "http://x"))
    ctx.datasets = suite.data
    samples = asyncio.run(REGISTRY["dataset"].factory(**entry.params)(ctx))
    return samples, provider


def last_user(request: ChatRequest) -> str:
    return str(request.messages[-1]["content"])


# Templates ---------------------------------------------------------------------------------


def test_template_fills_fields_and_nothing_else() -> None:
    assert fields("Q: {question} ({id}) {{literal}}") == ["question", "id"]
    assert render("Q: {question} {{x}} {n}", {"question": "why?", "n": [1, 2]}) == (
        "Q: why? {x} [1, 2]"
    )
    assert value("{n}", {"n": 3}) == 3 and value("n={n}", {"n": 3}) == "n=3"
    for bad in ("{a.b}", "{a[0]}", "{a!r}", "{a:>10}", "{", "x}", "{__class__.__mro__}"):
        with pytest.raises(TemplateError):
            fields(bad)


# Graders -----------------------------------------------------------------------------------


def test_choice_reads_the_letter_the_reply_names() -> None:
    for reply in ("B", "(B)", "B.", "B) Mercury", "The answer is (B).", "Answer: B", "**B**"):
        assert chosen_letters(reply, "ABCD") == {"B"}, reply
    assert chosen_letters("I think so", "ABCD") == set()
    assert chosen_letters("A. No wait, the answer is (C).", "ABCD") == {"A", "C"}
    assert chosen_letters("E", "ABCD") == set()


def test_numeric_reads_the_stated_number_only() -> None:
    assert parse_number("42") == 42 and parse_number("1,234.5") == 1234.5
    assert parse_number("forty-two") == 42 and parse_number("The answer is 15.") == 15
    assert parse_number("x = -3.5") == -3.5
    assert parse_number("7 plus 8") is None and parse_number("15 apples and 3 pears") is None


def test_regex_patterns_that_could_backtrack_forever_are_refused() -> None:
    assert regex_problem(r"(a+)+$") and regex_problem(r"(x|xy)*z") and regex_problem("(")
    assert regex_problem(r"\d{4}-\d{2}-\d{2}") is None
    rows = [{"question": "Date?"}]
    problems = errors_of(document(params({"type": "regex", "pattern": r"(\w+\s?)+$"}), rows))
    assert problems[0]["loc"] == ["checks", 0, "params", "grader", "regex", "pattern"]


def test_each_grader_passes_the_answer_and_fails_the_neighbourhood() -> None:
    rows = [{"id": "r1", "question": "What is 6 times 7?", "answer": "42", "letter": "B"}]
    cases = [
        ({"type": "exact", "answer": "{answer}"}, "42.", "The answer is 42"),
        ({"type": "normalised", "answer": "{answer}"}, "forty-two", "42 or 43"),
        ({"type": "numeric", "answer": "{answer}", "tolerance": 0.5}, "42.4", "43"),
        ({"type": "choice", "answer": "{letter}"}, "The answer is (B).", "A or B"),
        ({"type": "regex", "pattern": r"4\d"}, "42", "forty"),
        ({"type": "contains_all", "values": ["{answer}"]}, "It is 42, of course.", "No idea"),
        ({"type": "contains_none", "values": ["43"]}, "42", "43"),
    ]
    for grader, good, bad in cases:
        raw = document(params(grader), rows)
        assert run(raw, lambda _, good=good: good)[0][0].grade is Grade.PASS, grader
        failed = run(raw, lambda _, bad=bad: bad)[0][0]
        assert failed.grade is Grade.FAIL and failed.detail.get("reason"), grader
        empty = run(raw, lambda _: "  ")[0][0]
        assert empty.grade is Grade.FAIL and empty.detail["reason"] == "empty", grader


def test_a_reply_that_repeats_the_prompt_never_passes_a_containment_grader() -> None:
    rows = [{"question": "Name a primary colour other than red or blue, in one word."}]
    for grader in (
        {"type": "contains_none", "values": ["green"]},
        {"type": "regex", "pattern": "colour", "match": "search"},
        {"type": "contains_all", "values": ["yellow"]},
    ):
        raw = document(params(grader), rows)
        samples, _ = run(raw, lambda r: last_user(r) + " yellow")
        assert samples[0].grade is Grade.FAIL, grader
        assert samples[0].detail["reason"] == "echoed_prompt", grader


def test_contains_all_of_a_value_the_prompt_holds_is_refused() -> None:
    rows = [{"question": "Is Paris the capital of France?", "answer": "Paris"}]
    problems = errors_of(document(params({"type": "contains_all", "values": ["{answer}"]}), rows))
    assert problems[0]["loc"] == ["checks", 0, "params", "grader"]
    assert "the prompt itself holds 'Paris'" in problems[0]["msg"]


def test_json_schema_grader_wants_the_values_not_just_the_shape() -> None:
    schema = {
        "type": "object",
        "required": ["city", "year"],
        "properties": {"city": {"type": "string"}, "year": {"type": "integer"}},
    }
    rows = [{"question": "Where and when?", "city": "Paris", "year": 1889}]
    grader = {"type": "json_schema", "expected": {"city": "{city}", "year": "{year}"}}
    raw = document(params(grader, response_schema=schema), rows)
    right = run(raw, lambda _: '```json\n{"city": "paris", "year": 1889}\n```')[0][0]
    assert right.grade is Grade.PASS
    placeholder = run(raw, lambda _: '{"city": "example", "year": 1}')[0][0]
    assert placeholder.detail["reason"] == "wrong_values"
    assert run(raw, lambda _: '{"city": 3}')[0][0].detail["reason"] == "schema_invalid"
    assert run(raw, lambda _: "{nope")[0][0].detail["reason"] == "not_json"
    sent = run(raw, lambda _: "{}")[1].requests[0]
    assert sent.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }


def test_system_and_user_templates_are_sent() -> None:
    rows = [{"question": "Hi?", "persona": "a pirate"}]
    raw = document(
        {
            "params": {
                "dataset": "rows",
                "prompt": {"system": "You are {persona}.", "user": "{question}"},
                "grader": {"type": "exact", "answer": "Arr"},
                "max_tokens": 12,
            }
        },
        rows,
    )
    request = run(raw, lambda _: "Arr")[1].requests[0]
    assert request.messages == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Hi?"},
    ]
    assert request.max_tokens == 12


# Loading -----------------------------------------------------------------------------------


def test_bad_input_is_refused_with_its_path_and_line() -> None:
    raw = b"""name: mine
version: "1"
datasets:
  rows:
    rows:
      - {question: "Q?"}
checks:
  - name: not_a_check
  - name: dataset
    params:
      dataset: rows
      prompt: {user: "{question} {missing}"}
      grader: {type: exact, answer: x}
"""
    problems = errors_of(raw)
    assert problems[0] == {
        "loc": ["checks", 0, "name"],
        "msg": problems[0]["msg"],
        "line": 8,
    } and problems[0]["msg"].startswith("unknown check")
    assert problems[1]["loc"] == ["checks", 1, "params", "prompt"]
    assert "has no field 'missing'" in problems[1]["msg"] and problems[1]["line"] == 12


def test_a_dataset_row_that_is_not_json_is_refused_naming_its_line() -> None:
    raw = document(params({"type": "exact", "answer": "x"}), [])
    doc = yaml.safe_load(raw)
    doc["datasets"] = {"rows": {"file": "rows.jsonl"}}
    raw = yaml.safe_dump(doc).encode()
    problems = errors_of(raw, {"rows.jsonl": b'{"question": "a"}\n{oops\n'})
    assert problems[0]["loc"] == ["datasets", "rows"]
    assert problems[0]["msg"].startswith("line 2 is not JSON")
    assert errors_of(raw)[0]["loc"] == ["datasets", "rows", "file"]  # no such upload
    unused = errors_of(raw, {"rows.jsonl": b'{"question": "a"}\n', "other.jsonl": b""})
    assert "no dataset names the file 'other.jsonl'" in unused[0]["msg"]


def test_a_grader_that_does_not_fit_its_check_is_refused() -> None:
    rows = [{"question": "Q?", "answer": "B"}]
    tools = [{"name": "lookup", "parameters": {"type": "object"}}]
    problems = errors_of(
        document(params({"type": "choice", "answer": "{answer}"}, tools=tools), rows)
    )
    assert problems[0]["loc"] == ["checks", 0, "params"]
    assert "does not fit a check with tools" in problems[0]["msg"]
    not_a_letter = errors_of(document(params({"type": "choice", "answer": "{question}"}), rows))
    assert "is not one of ABCD" in not_a_letter[0]["msg"]
    no_schema = errors_of(document(params({"type": "json_schema"}), rows))
    assert "needs a schema" in no_schema[0]["msg"]
    not_a_number = errors_of(document(params({"type": "numeric", "answer": "{answer}"}), rows))
    assert "is not a number" in not_a_number[0]["msg"]


def test_a_tenant_suite_names_nothing_operational() -> None:
    rows = [{"question": "Q?"}]
    grader = {"type": "exact", "answer": "x"}
    queue = errors_of(document(params(grader), rows, queue="certification:0"))
    assert queue[0]["loc"] == ["queue"] and "Extra inputs" in queue[0]["msg"]
    bench = errors_of(document(params(grader), rows, purpose="benchmark"))
    assert bench[0]["loc"] == ["purpose"]
    extra = errors_of(document(params(grader) | {"priority": "high"}, rows))
    assert extra[0]["loc"] == ["checks", 0, "priority"]


def test_yaml_aliases_and_oversized_documents_are_refused() -> None:
    bomb = b'name: &a mine\nversion: "1"\nchecks: [{name: chat}]\ndescription: *a\n'
    assert "aliases" in errors_of(bomb)[0]["msg"]
    with pytest.raises(SuiteTooLarge):
        load_document(b"#" * (MAX_DOCUMENT_BYTES + 1))
    rows = [{"question": f"Q{i}?"} for i in range(6000)]
    with pytest.raises(SuiteTooLarge):
        load_document(document(params({"type": "exact", "answer": "x"}), rows))


def test_the_hash_covers_what_runs_not_how_it_is_spelled() -> None:
    rows = [{"question": "Q?", "answer": "A"}]
    raw = document(params({"type": "exact", "answer": "{answer}"}), rows)
    as_json = json.dumps(yaml.safe_load(raw), indent=4).encode()
    same = load_document(raw).content_hash
    assert load_document(as_json, "json").content_hash == same
    other_rows = document(
        params({"type": "exact", "answer": "{answer}"}), [rows[0] | {"answer": "B"}]
    )
    assert load_document(other_rows).content_hash != same
    doc = yaml.safe_load(raw)
    doc["datasets"] = {"rows": {"file": "r.jsonl"}}
    uploaded = load_document(
        yaml.safe_dump(doc).encode(), "yaml", {"r.jsonl": json.dumps(rows[0]).encode() + b"\n"}
    )
    assert uploaded.data == load_document(raw).data


def test_the_documented_examples_are_valid() -> None:
    found = {load_path(path).ref for path in sorted(EXAMPLES.glob("*.yaml"))}
    assert {"knowledge@1.0.0", "invoice-extraction@1.0.0"} <= found
