"""What the reference model answers, by persona: how real models behave, good and bad.

- `good` answers right: it knows the shipped datasets' answers (a stand-in for a competent
  model), refuses the harmful safety items and answers the benign ones.
- `wrong` answers wrong, on purpose.
- `parrot` is a base model that does not follow instructions: it repeats the prompt and
  rambles on until the token limit ("… apple-1 mendatang the of …", finish_reason length).
- `refuse` refuses everything; `comply` answers everything, harmful requests included.
- `judge` grades a judge prompt (checks.judging) from its content, as a sound judge model
  would (judge_verdict); `judge-lenient` passes every answer it is asked about. Both answer
  any other prompt as `good`.

The answers come from the prompts, the shipped datasets and the example suites of
docs/suites/ (a team's own datasets, docs/suites.md), so a verdict against the reference
endpoint reflects what the persona did, and the graders are tested against the behaviours
real small models show (docs/methodology.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.certification.suites import DATASETS_DIR

PERSONAS = ("good", "wrong", "parrot", "refuse", "comply", "judge", "judge-lenient")
TOKEN_PROMPT = re.compile(r"Reply with exactly this token and nothing else:\s*(\S+)")
QUESTION = re.compile(r"Question:\s*(.+?)\s*$", re.S)
NEEDLE = re.compile(r"The secret code is ([A-Z0-9-]+)\.")
REFUSAL = "I'm sorry, but I can't help with that request."
COMPLIANCE = "Sure. Here is an overview of how people usually go about that, step by step."
JUNK = ("mendatang", "the", "of", "and", "kepada", "which", "la", "de", "also", "in")
LIGHTHOUSE = "A tall coastal tower whose lamp guides ships safely at night."
HAIKU = "Cold drops on red leaves / gutters hum all evening long / the year lets go slow"
SKY = "Air molecules scatter short blue wavelengths of sunlight far more than red ones."
KNOWN = {
    "Reply with the word OK.": "OK",
    "Describe a lighthouse in one sentence.": LIGHTHOUSE,
    "List three prime numbers greater than 50, separated by commas.": "53, 59, 61",
    "Write a haiku about autumn rain.": HAIKU,
    "Explain in one sentence why the sky looks blue.": SKY,
}


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finish_reason: str = "stop"


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _dataset(name: str) -> list[dict[str, Any]]:
    lines = (DATASETS_DIR / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@lru_cache(maxsize=1)
def qa_answers() -> dict[str, str]:
    """Question → first accepted answer, from the shipped QA dataset."""
    return {
        item["question"].strip(): str(item["answers"][0]) for item in _dataset("qa-basic.jsonl")
    }


@lru_cache(maxsize=1)
def task_answers() -> dict[str, dict[str, Any]]:
    """Prompt → the answer object, from the shipped JSON and tool-calling tasks."""
    return {
        item["prompt"]: item["answer"]
        for name in ("json-tasks.jsonl", "tool-tasks.jsonl")
        for item in _dataset(name)
    }


# The documented example suites (a checkout's docs/suites/; absent from an installed wheel).
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "docs" / "suites"


@lru_cache(maxsize=1)
def example_answers() -> dict[str, Any]:
    """User prompt → the right reply (text, or an object for a JSON answer), from the rows of
    the example suites' dataset checks and their graders."""
    from app.certification.checks.dataset import DatasetParams
    from app.certification.checks.template import render, text_of, value
    from app.certification.suites.documents import load_path

    known: dict[str, Any] = {}
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")) if EXAMPLES_DIR.is_dir() else ():
        suite = load_path(path)
        for entry in suite.definition.checks:
            if entry.name != "dataset":
                continue
            params = DatasetParams.model_validate(entry.params)
            grader = params.grader
            for row in suite.data[params.dataset]:
                prompt = render(params.prompt.user, row)
                if grader.type == "choice":
                    known[prompt] = f"The answer is ({text_of(value(grader.answer, row))})."
                elif grader.type == "json_schema":
                    answer = example_for(params.answer_schema() or {})
                    for key, want in grader.expected.items():
                        answer[key] = value(want, row) if isinstance(want, str) else want
                    known[prompt] = answer
                elif grader.type in ("exact", "normalised", "numeric"):
                    found = value(grader.answer, row)
                    known[prompt] = text_of(found[0] if isinstance(found, list) else found)
                elif grader.type == "judge" and grader.reference is not None:
                    known[prompt] = render(grader.reference, row)
    return known


@lru_cache(maxsize=1)
def safety_items() -> dict[str, tuple[str, str]]:
    """Prompt → ("harmful" | "benign", the reference answer of a benign one)."""
    items: dict[str, tuple[str, str]] = {}
    for pair in _dataset("safety-pairs.jsonl"):
        items[pair["harmful"]] = ("harmful", "")
        items[pair["benign"]] = ("benign", pair["benign_reference_answer"])
    return items


def example_for(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_for(sub) for name, sub in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_for(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    value = "example"
    value += "x" * max(0, int(schema.get("minLength", 0)) - len(value))
    return value[: int(schema["maxLength"])] if "maxLength" in schema else value


def parrot(text: str, max_tokens: int) -> Reply:
    """The prompt again, then filler, cut at the token limit (a word a token)."""
    words = text.split()
    junk = [JUNK[i % len(JUNK)] for i in range(max(0, max_tokens - len(words)))]
    return Reply(" ".join((words + junk)[: max(1, max_tokens)]), finish_reason="length")


def respond(
    messages: list[dict[str, Any]],
    persona: str = "good",
    tools: list[Tool] | None = None,
    json_schema: dict[str, Any] | None = None,
    max_tokens: int = 64,
) -> Reply:
    """The reference model's reply as `persona` (see the module docstring)."""
    text = last_user_text(messages)
    if persona.startswith("judge"):
        verdict = judge_verdict(text, lenient=persona == "judge-lenient")
        if verdict is not None:
            return Reply(verdict)
        persona = "good"
    if persona == "parrot":
        return parrot(text, max_tokens)
    if persona == "refuse":
        return Reply(REFUSAL)
    correct = persona != "wrong"
    if tools:
        if not correct:
            return Reply("I would rather not use tools.")
        known = task_answers().get(text)
        args = known if known is not None else example_for(tools[0].parameters)
        return Reply("", [(tools[0].name, args)], finish_reason="tool_calls")
    if json_schema is not None:
        if not correct:
            return Reply("{not json")
        known = task_answers().get(text)
        if known is None and isinstance(example_answers().get(text), dict):
            known = example_answers()[text]
        return Reply(json.dumps(known if known is not None else example_for(json_schema)))
    return Reply(answer(text, persona) if text else ("OK." if correct else "No."))


def answer(text: str, persona: str) -> str:
    correct = persona != "wrong"
    needle = NEEDLE.search(text)
    if needle and "secret code" in text[-300:]:
        return needle.group(1) if correct else "I could not find a code."
    safety = safety_items().get(text)
    if safety is not None:
        kind, reference = safety
        if kind == "harmful":
            return COMPLIANCE if persona in ("comply", "wrong") else REFUSAL
        return reference if correct else "No."
    question = QUESTION.search(text)
    if question and question.group(1) in qa_answers():
        return qa_answers()[question.group(1)] if correct else "I am not sure."
    match = TOKEN_PROMPT.search(text)
    if match:
        return match.group(1) if correct else "I would rather talk about something else."
    example = example_answers().get(text)
    if isinstance(example, str):
        return example if correct else wrong_answer(example)
    if not correct:
        return "No."
    return KNOWN.get(text.strip(), f"Understood: a reply of {len(text.split())} words' worth.")


def wrong_answer(right: str) -> str:
    """What the `wrong` persona says instead of a known answer: another option letter."""
    letter = re.fullmatch(r"The answer is \(([A-J])\)\.", right)
    if letter:
        return f"The answer is ({'B' if letter.group(1) == 'A' else 'A'})."
    return "I am not sure."


# What a sound judge looks for in an answer: the reference answer's figures, and most of its
# content words (words of four letters or more outside STOPWORDS, plural -s aside).
STOPWORDS = frozenset(
    "that this with from your have will they them then than what when where which while "
    "there their these those into onto over under about after before also only just more "
    "most some such very been being were does done each other please would could should".split()
)
FIGURE = re.compile(r"\d+(?:[.,]\d+)?")
COVERAGE = 0.6


def _terms(text: str) -> set[str]:
    return {
        word.removesuffix("s")
        for word in re.findall(r"[a-z]+", text.lower())
        if len(word) >= 4 and word not in STOPWORDS
    }


def judge_verdict(prompt: str, lenient: bool = False) -> str | None:
    """The verdict of the reference judge on a judge prompt (None when `prompt` is not one):
    pass when the answer is not empty, does not repeat the question, gives every figure of
    the reference answer and at least COVERAGE of its content words. `lenient`: always pass."""
    from app.certification.checks.grading import echoes_prompt
    from app.certification.checks.judging import prompt_parts

    parts = prompt_parts(prompt)
    if "answer" not in parts:
        return None
    answer, reference = parts["answer"], parts.get("reference", "")
    if lenient:
        return json.dumps({"grade": "pass", "reason": "The answer looks fine."})
    missing_figures = sorted(set(FIGURE.findall(reference)) - set(FIGURE.findall(answer)))
    terms = _terms(reference)
    held = terms & _terms(answer)
    if not answer.strip():
        reason = "The answer is empty."
    elif echoes_prompt(answer, parts.get("question", "")):
        reason = "The answer repeats the question instead of answering it."
    elif missing_figures:
        reason = f"The answer does not give {missing_figures[0]}, as the reference does."
    elif terms and len(held) < COVERAGE * len(terms):
        missing = ", ".join(sorted(terms - held)[:3])
        reason = f"The answer misses what the reference says ({missing})."
    else:
        return json.dumps({"grade": "pass", "reason": "The answer gives the reference's facts."})
    return json.dumps({"grade": "fail", "reason": reason})
