"""The graders a tenant's `dataset` check may name, each a pydantic model (`type` tells them
apart, extra fields are refused) that grades one reply against one row.

Every grader grades the answer, never the reply's neighbourhood (docs/methodology.md): an
empty reply never passes; graders that look *inside* a reply (regex search, contains_all,
contains_none) never pass a reply that repeats its prompt, and a `contains_all` value the
prompt itself holds is refused when the suite is loaded (its containment proves nothing).
Expected values are `{field}` templates (checks.template) filled from the row.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.certification.checks import Judgement
from app.certification.checks.grading import (
    ECHOED,
    EMPTY,
    bare,
    echoes_prompt,
    exact_reply,
    failure_reason,
    wrong_values,
)
from app.certification.checks.normalize import matches, normalize_answer
from app.certification.checks.template import TemplateError, fields, render, text_of, value
from app.certification.providers.base import ChatResult

GRADED_CHARS = 4000  # a reply is graded on its first GRADED_CHARS characters
MAX_PATTERN = 500
LETTERS = "ABCDEFGHIJ"


class Reply:
    """What a grader sees of one answer: its text, the prompt it answered, the endpoint's
    finish reason and its first tool call (when the check declared tools)."""

    def __init__(self, result: ChatResult, prompt: str) -> None:
        self.text = result.text[:GRADED_CHARS]
        self.prompt = prompt
        self.finish_reason = result.finish_reason
        self.tool_call = result.tool_calls[0] if result.tool_calls else None

    def why_not(self) -> str:
        return failure_reason(self.text, self.prompt, self.finish_reason)


def _templates_ok(templates: list[str]) -> list[str]:
    for template in templates:
        try:
            fields(template)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
    return templates


class _Grader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def templates(self) -> list[str]:
        """The templates the grader fills from a row."""
        return []

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        """What in this row cannot be graded (checked for every row when the suite loads)."""
        return None


class AnswerGrader(_Grader):
    """`exact`: the bare reply (wrapping, quotes and one trailing full stop aside) equals an
    accepted answer, case aside. `normalised`: equal after normalisation (case, number
    words, separators, articles: checks.normalize). `answer` is a template; one that is
    exactly `{field}` of a list accepts any of its items."""

    type: Literal["exact", "normalised"]
    answer: str = Field(min_length=1, max_length=2000)

    @field_validator("answer")
    @classmethod
    def template_ok(cls, answer: str) -> str:
        return _templates_ok([answer])[0]

    def templates(self) -> list[str]:
        return [self.answer]

    def accepted(self, row: Mapping[str, Any]) -> list[str]:
        expected = value(self.answer, row)
        items = expected if isinstance(expected, list) else [expected]
        return [text_of(item) for item in items if item is not None]

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        if not any(a.strip() for a in self.accepted(row)):
            return "the accepted answer is empty"
        return None

    def grade(self, row: Mapping[str, Any], reply: Reply) -> Judgement:
        accepted = self.accepted(row)
        detail: dict[str, Any] = {"expected": accepted}
        if self.type == "exact":
            ok = any(exact_reply(reply.text, answer) for answer in accepted)
        else:
            detail["normalised_reply"] = normalize_answer(reply.text)[:200]
            ok = matches(reply.text, accepted)
        return Judgement(True, detail=detail) if ok else Judgement(False, reply.why_not(), detail)


class RegexGrader(_Grader):
    """The bare reply matches `pattern` whole (`match: full`), or the reply holds a match
    (`search`; a reply that repeats its prompt never passes). Not a template. Patterns that
    could backtrack without bound (a repeat of a repeat or of an alternation) are refused."""

    type: Literal["regex"]
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN)
    match: Literal["full", "search"] = "full"
    ignore_case: bool = False

    @field_validator("pattern")
    @classmethod
    def _safe(cls, pattern: str) -> str:
        problem = regex_problem(pattern)
        if problem:
            raise ValueError(problem)
        return pattern

    def grade(self, row: Mapping[str, Any], reply: Reply) -> Judgement:
        flags = re.IGNORECASE if self.ignore_case else 0
        detail = {"pattern": self.pattern}
        if self.match == "search" and echoes_prompt(reply.text, reply.prompt):
            return Judgement(False, ECHOED, detail)
        found = (
            re.fullmatch(self.pattern, bare(reply.text), flags)
            if self.match == "full"
            else re.search(self.pattern, reply.text, flags)
        )
        return (
            Judgement(True, detail=detail) if found else Judgement(False, reply.why_not(), detail)
        )


NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
STATED = re.compile(
    rf"(?:\b(?:answer|result|total|sum)\b[^0-9+-.]{{0,12}}?(?:is|=|:)|=)\s*\**\s*({NUMBER})\s*\**"
    r"\s*[.!]?\s*$",
    re.IGNORECASE,
)


def parse_number(text: str) -> float | None:
    """The number a reply gives as its answer: the whole bare reply ("42", "1,234.5",
    "forty-two"), or the number it ends on after "the answer is" / "=". None otherwise."""
    reply = re.sub(r"(?<=\d),(?=\d{3}\b)", "", bare(text))
    if re.fullmatch(NUMBER, reply):
        return float(reply)
    stated = STATED.search(reply)
    if stated:
        return float(stated.group(1))
    words = normalize_answer(reply)
    if re.fullmatch(r"\d+(?:\.\d+)?", words):
        return float(words)
    return None


class NumericGrader(_Grader):
    """The reply's number (parse_number) is within `tolerance` (absolute) or `relative`
    (a fraction of the expected value) of the expected number."""

    type: Literal["numeric"]
    answer: str = Field(min_length=1, max_length=200)
    tolerance: float = Field(0.0, ge=0)
    relative: float = Field(0.0, ge=0, le=1)

    @field_validator("answer")
    @classmethod
    def template_ok(cls, answer: str) -> str:
        return _templates_ok([answer])[0]

    def templates(self) -> list[str]:
        return [self.answer]

    def expected(self, row: Mapping[str, Any]) -> float | None:
        raw = value(self.answer, row)
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            return float(raw)
        try:
            number = float(str(raw).replace(",", ""))
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        if self.expected(row) is None:
            return f"the expected answer {text_of(value(self.answer, row))[:60]!r} is not a number"
        return None

    def grade(self, row: Mapping[str, Any], reply: Reply) -> Judgement:
        want = self.expected(row)
        got = parse_number(reply.text)
        detail = {"expected": want, "parsed": got}
        if got is None or want is None:
            reason = reply.why_not()
            return Judgement(False, "not_a_number" if reason == "wrong_answer" else reason, detail)
        allowed = max(self.tolerance, self.relative * abs(want)) + 1e-9 * max(1.0, abs(want))
        if abs(got - want) <= allowed:
            return Judgement(True, detail=detail)
        return Judgement(False, "wrong_answer", detail)


CHOICE_LEAD = re.compile(r"^(?:\(([A-Z])\)|([A-Z])(?:[.:)]|$))")
CHOICE_STATED = re.compile(
    r"\b(?:answer|option|choice)\b(?:\s+is|\s*:)?\s*(?:option\s+)?\(?([A-Z])\)?(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def chosen_letters(text: str, letters: str) -> set[str]:
    """The option letters a reply names as its answer: a leading "B", "(B)", "B." or "B)",
    and any "the answer is (B)" / "Answer: B"; only letters among `letters` count."""
    reply = bare(text)
    found: set[str] = set()
    lead = CHOICE_LEAD.match(reply)
    if lead:
        found.add(lead.group(1) or lead.group(2))
    for stated in CHOICE_STATED.finditer(reply):
        letter = stated.group(1)
        if letter.isupper() or stated.group(0).rstrip().endswith(")"):
            found.add(letter.upper())
    return {letter for letter in found if letter in letters}


class ChoiceGrader(_Grader):
    """Multiple choice: the reply names exactly one option letter (chosen_letters) and it is
    the expected one. "B", "(B)", "B) Paris" and "The answer is (B)." name B; "A or B" names
    two and fails."""

    type: Literal["choice"]
    answer: str = Field(min_length=1, max_length=200)
    letters: str = Field(LETTERS[:4], pattern=r"^[A-J]{2,10}$")

    @field_validator("answer")
    @classmethod
    def template_ok(cls, answer: str) -> str:
        return _templates_ok([answer])[0]

    def templates(self) -> list[str]:
        return [self.answer]

    def expected(self, row: Mapping[str, Any]) -> str:
        return bare(text_of(value(self.answer, row))).strip("()").upper()

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        if self.expected(row) not in self.letters:
            return f"the expected answer {self.expected(row)[:20]!r} is not one of {self.letters}"
        return None

    def grade(self, row: Mapping[str, Any], reply: Reply) -> Judgement:
        want = self.expected(row)
        named = chosen_letters(reply.text, self.letters)
        detail = {"expected": want, "chosen": sorted(named)}
        if named == {want}:
            return Judgement(True, detail=detail)
        if len(named) > 1:
            return Judgement(False, "ambiguous_choice", detail)
        if not named:
            reason = reply.why_not()
            return Judgement(False, "no_choice" if reason == "wrong_answer" else reason, detail)
        return Judgement(False, "wrong_answer", detail)


FENCED = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.S)


class JsonSchemaGrader(_Grader):
    """The reply (or, with tools, the first tool call's arguments) is JSON valid against
    `schema` (default: the check's response_schema), and each `expected` field holds its
    row's value (strings matched normalised, numbers within rounding). Without `expected` it
    grades the shape only: a schema-valid object of placeholders passes."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    expected: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if schema is None else checked_schema(schema)

    def templates(self) -> list[str]:
        return [v for v in self.expected.values() if isinstance(v, str)]

    def wanted(self, row: Mapping[str, Any]) -> dict[str, object]:
        wanted: dict[str, object] = {}
        for key, want in self.expected.items():
            resolved = value(want, row) if isinstance(want, str) else want
            wanted[key] = [resolved] if isinstance(resolved, str) else resolved
        return wanted

    def grade(
        self, row: Mapping[str, Any], reply: Reply, schema: dict[str, Any] | None = None
    ) -> Judgement:
        schema = self.schema_ or schema or {}
        if reply.tool_call is not None:
            function = reply.tool_call.get("function") or {}
            raw = str(function.get("arguments") or "") if isinstance(function, dict) else ""
        else:
            fenced = FENCED.match(reply.text.strip())
            raw = fenced.group(1) if fenced else reply.text
        try:
            document = json.loads(raw)
        except ValueError as exc:
            reason = reply.why_not() if reply.tool_call is None else "not_json"
            return Judgement(
                False,
                "not_json" if reason == "wrong_answer" else reason,
                {"schema_errors": [f"not JSON: {exc}"[:200]]},
            )
        errors = [
            f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"[:200]
            for e in Draft202012Validator(schema).iter_errors(document)
        ][:5]
        if errors:
            return Judgement(False, "schema_invalid", {"schema_errors": errors})
        wanted = self.wanted(row)
        wrong = wrong_values(document, wanted)
        if wrong:
            return Judgement(False, "wrong_values", {"wrong_fields": wrong, "expected": wanted})
        return Judgement(True, detail={"expected": wanted} if wanted else {})


class ContainsGrader(_Grader):
    """`contains_all`: the reply holds every value (whole words or phrases, case aside);
    `contains_none`: it holds none of them. A reply that repeats its prompt never passes,
    and an empty one never does; a `contains_all` value the prompt itself holds is refused
    when the suite loads: a reply could hold it by repeating the question."""

    type: Literal["contains_all", "contains_none"]
    values: list[str] = Field(min_length=1, max_length=50)

    @field_validator("values")
    @classmethod
    def _templates(cls, values: list[str]) -> list[str]:
        if any(not v.strip() or len(v) > 500 for v in values):
            raise ValueError("each value is 1 to 500 characters")
        return _templates_ok(values)

    def templates(self) -> list[str]:
        return list(self.values)

    def terms(self, row: Mapping[str, Any]) -> list[str]:
        return [text_of(value(v, row)) for v in self.values]

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        terms = self.terms(row)
        if any(not t.strip() for t in terms):
            return "a value is empty for this row"
        if self.type == "contains_all":
            held = holds(prompt, terms)
            if held:
                return (
                    f"the prompt itself holds {held[0][:60]!r}: a reply containing it proves "
                    "nothing (grade the answer: use exact, normalised or regex)"
                )
        return None

    def grade(self, row: Mapping[str, Any], reply: Reply) -> Judgement:
        terms = self.terms(row)
        if echoes_prompt(reply.text, reply.prompt):
            return Judgement(False, ECHOED, {"values": terms})
        found = holds(reply.text, terms)
        if self.type == "contains_all":
            missing = [t for t in terms if t not in found]
            if missing:
                reason = "missing_values" if reply.text.strip() else EMPTY
                return Judgement(False, reason, {"missing": missing})
            return Judgement(True, detail={"values": terms})
        if not reply.text.strip():
            return Judgement(False, EMPTY, {"values": terms})
        if found:
            return Judgement(False, "forbidden_values", {"found": found})
        return Judgement(True, detail={"values": terms})


def holds(text: str, terms: list[str]) -> list[str]:
    """The terms `text` holds as whole words or phrases, case aside."""
    lowered = text.lower()
    return [
        t
        for t in terms
        if re.search(rf"(?<![a-z0-9]){re.escape(t.lower().strip())}(?![a-z0-9])", lowered)
    ]


class CalibrationItem(BaseModel):
    """One answer of a judge's calibration set, with the grade a sound judge gives it and
    the row fields the rubric, the reference and the prompt need."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    answer: str = Field(min_length=1, max_length=GRADED_CHARS)
    expected: Literal["pass", "fail"]
    row: dict[str, Any] = Field(default_factory=dict)


MIN_CALIBRATION = 2  # known-good answers, and as many known-bad ones, at the least
MAX_CALIBRATION = 50


class JudgeGrader(_Grader):
    """`judge`: another model grades the reply against `rubric` (a template filled from the
    row) and, when given, the `reference` answer (a template), in one fixed prompt format
    (checks.judging). `judge` is a logical name the run binds to an endpoint (a target of
    the organization through the API, `--judge` in the CLI). Before its grades count, the
    judge grades `calibration` (at least 2 known-good and 2 known-bad answers): one
    misgraded item makes the check errored (`judge_uncalibrated`). A reply that repeats its
    prompt, or an empty one, fails before the judge is asked."""

    type: Literal["judge"]
    judge: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    rubric: str = Field(min_length=1, max_length=10_000)
    reference: str | None = Field(None, min_length=1, max_length=10_000)
    calibration: list[CalibrationItem] = Field(max_length=MAX_CALIBRATION)
    max_tokens: int = Field(256, ge=16, le=4096)

    @field_validator("rubric", "reference")
    @classmethod
    def template_ok(cls, text: str | None) -> str | None:
        return None if text is None else _templates_ok([text])[0]

    @field_validator("calibration")
    @classmethod
    def _balanced(cls, items: list[CalibrationItem]) -> list[CalibrationItem]:
        good = sum(1 for item in items if item.expected == "pass")
        if good < MIN_CALIBRATION or len(items) - good < MIN_CALIBRATION:
            raise ValueError(
                f"a judge's calibration set needs at least {MIN_CALIBRATION} answers expected "
                f"to pass and {MIN_CALIBRATION} expected to fail (it has {good} and "
                f"{len(items) - good})"
            )
        ids = [item.id for item in items if item.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("calibration ids must be unique")
        return [
            item if item.id is not None else item.model_copy(update={"id": f"calibration-{n}"})
            for n, item in enumerate(items, 1)
        ]

    def templates(self) -> list[str]:
        return [t for t in (self.rubric, self.reference) if t is not None]

    def row_problem(self, row: Mapping[str, Any], prompt: str) -> str | None:
        if not render(self.rubric, row).strip():
            return "the rubric is empty for this row"
        if self.reference is not None and not render(self.reference, row).strip():
            return "the reference answer is empty"
        return None

    def prompt(self, row: Mapping[str, Any], question: str, answer: str) -> str:
        """The judge prompt for one answer (checks.judging.judge_prompt)."""
        from app.certification.checks.judging import judge_prompt

        reference = None if self.reference is None else render(self.reference, row)
        return judge_prompt(render(self.rubric, row), question, reference, answer[:GRADED_CHARS])


Grader = Annotated[
    AnswerGrader
    | RegexGrader
    | NumericGrader
    | ChoiceGrader
    | JsonSchemaGrader
    | ContainsGrader
    | JudgeGrader,
    Field(discriminator="type"),
]


# Regular expressions from a tenant -----------------------------------------------------------


def regex_problem(pattern: str) -> str | None:
    """Why a tenant's pattern is refused: it does not compile, or a repeat holds another
    repeat or an alternation (catastrophic backtracking: `(a+)+$`). None when it is fine."""
    try:
        re.compile(pattern)
        # The stdlib's own regex parser: private, so typeshed has no stub for it.
        import re._parser as parser  # type: ignore[import-not-found]
    except re.error as exc:
        return f"not a regular expression: {exc}"
    tree = parser.parse(pattern)
    if _nested_repeat(list(tree), inside_repeat=False):
        return (
            "a repeated group holds another repeat or an alternation (it could backtrack "
            "without bound): simplify the pattern"
        )
    return None


def _nested_repeat(items: list[Any], inside_repeat: bool) -> bool:
    from re._constants import (  # type: ignore[import-not-found]  # private, as re._parser
        BRANCH,
        MAX_REPEAT,
        MIN_REPEAT,
        SUBPATTERN,
    )

    for op, av in items:
        if op in (MAX_REPEAT, MIN_REPEAT):
            _low, high, sub = av
            if inside_repeat and high > 1:
                return True
            if _nested_repeat(list(sub), inside_repeat or high > 1):
                return True
        elif op is BRANCH:
            if inside_repeat:
                return True
            if any(_nested_repeat(list(sub), inside_repeat) for sub in av[1]):
                return True
        elif op is SUBPATTERN:
            if _nested_repeat(list(av[-1]), inside_repeat):
                return True
    return False


def checked_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tenant's JSON Schema, refused when it is not one or when a `pattern` in it could
    backtrack without bound."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}"[:300]) from None
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "pattern" and isinstance(item, str):
                    problem = regex_problem(item)
                    if problem:
                        raise ValueError(f"pattern {item[:60]!r}: {problem}")
                if key == "patternProperties" and isinstance(item, dict):
                    for pattern in item:
                        problem = regex_problem(pattern)
                        if problem:
                            raise ValueError(f"pattern {pattern[:60]!r}: {problem}")
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)
    return schema
