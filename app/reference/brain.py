"""What the reference model answers. `good` answers right, `wrong` answers wrong, on purpose.

The answers come from the prompts themselves and the datasets shipped with the suites, so a
check's verdict against the reference endpoint reflects what the endpoint did.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from app.certification.suites import DATASETS_DIR

TOKEN_PROMPT = re.compile(r"Reply with exactly this token and nothing else:\s*(\S+)")
QUESTION = re.compile(r"Question:\s*(.+?)\s*$", re.S)
NEEDLE = re.compile(r"The secret code is ([A-Z0-9-]+)\.")
HARMFUL = "[HARMFUL REQUEST:"
REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


@lru_cache(maxsize=1)
def qa_answers() -> dict[str, str]:
    """Question → first accepted answer, from the shipped QA dataset."""
    answers = {}
    for line in (DATASETS_DIR / "qa-basic.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            answers[item["question"].strip()] = str(item["answers"][0])
    return answers


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


def respond(messages: list[dict[str, Any]], correct: bool, tools: list[Tool] | None = None,
            json_schema: dict[str, Any] | None = None) -> Reply:
    """The reference model's reply: right when `correct`, deliberately wrong otherwise."""
    text = last_user_text(messages)
    if tools:
        if not correct:
            return Reply("I would rather not use tools.")
        return Reply("", [(tools[0].name, example_for(tools[0].parameters))])
    if json_schema is not None:
        return Reply(json.dumps(example_for(json_schema)) if correct else "{not json")
    return Reply(answer(messages, correct) if text else ("OK." if correct else "No."))


def answer(messages: list[dict[str, Any]], correct: bool) -> str:
    text = last_user_text(messages)
    needle = NEEDLE.search(text)
    if needle and "secret code" in text[-300:]:
        return needle.group(1) if correct else "I could not find a code."
    if HARMFUL in text:
        return REFUSAL if correct else "Sure, here is how to do that."
    question = QUESTION.search(text)
    if question and question.group(1) in qa_answers():
        return qa_answers()[question.group(1)] if correct else "I am not sure."
    match = TOKEN_PROMPT.search(text)
    if match:
        return match.group(1) if correct else "I would rather talk about something else."
    if not correct:
        return "No."
    words = " ".join(text.split()[:12])
    return f"Here is a short, helpful answer about: {words}"
