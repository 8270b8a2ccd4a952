"""Tool calling: the model calls the declared function with JSON arguments valid for it,
holding the values the request gave (the city asked about, the amount to convert).

Tasks live in datasets/tool-tasks.jsonl. A call of the wrong tool, arguments the schema
refuses, and schema-valid arguments with the wrong values each fail with their own reason.
"""

from __future__ import annotations

import json
from typing import Any

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Judgement,
    graded_chats,
    register,
)
from app.certification.checks.datasets import load_jsonl
from app.certification.checks.grading import wrong_values
from app.certification.checks.json_schema import schema_errors
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample

DATASET = "tool-tasks.jsonl"


def judge_call(task: dict[str, Any], result: ChatResult) -> Judgement:
    calls = [c for c in result.tool_calls if isinstance(c, dict)]
    seen = {"tool_calls": calls[:3]}
    if not calls:
        return Judgement(False, "no_tool_call", seen)
    function = calls[0].get("function") or {}
    if function.get("name") != task["tool"]:
        return Judgement(
            False,
            "wrong_tool",
            seen | {"problems": [f"called {function.get('name')!r}, expected {task['tool']!r}"]},
        )
    try:
        arguments = json.loads(function.get("arguments") or "")
    except (TypeError, ValueError) as exc:
        return Judgement(
            False, "invalid_arguments", seen | {"problems": [f"arguments are not JSON: {exc}"]}
        )
    errors = (
        schema_errors(arguments, task["parameters"])
        if isinstance(arguments, dict)
        else ["arguments are not a JSON object"]
    )
    if errors:
        return Judgement(False, "invalid_arguments", seen | {"problems": errors})
    wrong = wrong_values(arguments, task["expected"])
    if wrong:
        return Judgement(
            False, "wrong_arguments", seen | {"wrong_fields": wrong, "expected": task["expected"]}
        )
    return Judgement(True, detail=seen)


@register(
    "tool_calling",
    requires="tools",
    planned=lambda prompts=6, **_: prompts,
    description="The model calls the declared function with valid arguments holding "
    "the values asked for.",
)
def tool_calling(prompts: int = 6, max_tokens: int = 256, dataset: str = DATASET) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        tasks = load_jsonl(dataset)
        items = [tasks[i % len(tasks)] for i in range(prompts)]

        def ask(index: int, task: dict[str, Any]) -> tuple[str, ChatRequest, dict[str, Any]]:
            tools = [
                {
                    "type": "function",
                    "function": {
                        "name": task["tool"],
                        "description": task.get("description", ""),
                        "parameters": task["parameters"],
                    },
                }
            ]
            return (
                f"{task['id']}-{index}",
                ChatRequest(
                    messages=[{"role": "user", "content": str(task["prompt"])}],
                    max_tokens=max_tokens,
                    tools=tools,
                ),
                {"tools": [task["tool"]]},
            )

        def judge(task: dict[str, Any], request: ChatRequest, result: ChatResult) -> Judgement:
            return judge_call(task, result)

        return await graded_chats(ctx, items, ask, judge)

    return check
