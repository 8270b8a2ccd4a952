"""JSON-schema output: with response_format json_schema, the reply parses, validates, and
holds the values the task asks for.

Each task (datasets/json-tasks.jsonl) asks for facts with one right answer (a person's
birth year, a country's currency code, the sum of two numbers); the reply passes when it is
a JSON document valid against the schema *and* its graded fields hold those values. A
schema-valid object of placeholders ("example", 1) is not an answer.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Judgement,
    graded_chats,
    register,
)
from app.certification.checks.datasets import load_jsonl
from app.certification.checks.grading import failure_reason, wrong_values
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample

DATASET = "json-tasks.jsonl"


def schema_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Why `value` is not valid against `schema` (empty when it is)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
        for e in Draft202012Validator(schema).iter_errors(value)
    ][:5]


def judge_json(task: dict[str, Any], prompt: str, result: ChatResult) -> Judgement:
    try:
        value = json.loads(result.text)
    except ValueError as exc:
        reason = failure_reason(result.text, prompt, result.finish_reason)
        return Judgement(
            False,
            "not_json" if reason == "wrong_answer" else reason,
            {"schema_errors": [f"not JSON: {exc}"]},
        )
    errors = schema_errors(value, task["schema"])
    if errors:
        return Judgement(False, "schema_invalid", {"schema_errors": errors})
    wrong = wrong_values(value, task["expected"])
    if wrong:
        return Judgement(
            False, "wrong_values", {"wrong_fields": wrong, "expected": task["expected"]}
        )
    return Judgement(True)


@register(
    "json_schema",
    requires="json_schema",
    planned=lambda prompts=8, **_: prompts,
    description="Structured output: JSON valid against the requested schema, holding "
    "the values asked for.",
)
def json_schema(prompts: int = 8, max_tokens: int = 256, dataset: str = DATASET) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        tasks = load_jsonl(dataset)
        items = [tasks[i % len(tasks)] for i in range(prompts)]

        def ask(index: int, task: dict[str, Any]) -> tuple[str, ChatRequest, dict[str, Any]]:
            name = str(task["id"]).replace("-", "_")
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": task["schema"], "strict": True},
            }
            return (
                f"{task['id']}-{index}",
                ChatRequest(
                    messages=[{"role": "user", "content": str(task["prompt"])}],
                    max_tokens=max_tokens,
                    response_format=response_format,
                ),
                {"response_format": "json_schema:" + name},
            )

        def judge(task: dict[str, Any], request: ChatRequest, result: ChatResult) -> Judgement:
            return judge_json(task, str(task["prompt"]), result)

        return await graded_chats(ctx, items, ask, judge)

    return check
