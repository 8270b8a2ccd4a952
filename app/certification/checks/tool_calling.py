"""Tool calling: the model calls the declared function with JSON arguments valid for it."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from app.certification.checks import (
    CheckContext,
    CheckFn,
    chat_sample,
    error_sample,
    register,
    run_samples,
)
from app.certification.providers.base import ChatRequest, ChatResult, EndpointError
from app.certification.results import Sample

TASKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("get_weather", "What is the weather in Oslo right now? Use the tool.", {
        "type": "object", "additionalProperties": False, "required": ["city"],
        "properties": {"city": {"type": "string", "minLength": 1},
                       "unit": {"enum": ["celsius", "fahrenheit"]}}}),
    ("convert_currency", "Convert 120 euros to US dollars using the tool.", {
        "type": "object", "additionalProperties": False, "required": ["amount", "source", "target"],
        "properties": {"amount": {"type": "number", "minimum": 0},
                       "source": {"type": "string", "minLength": 3, "maxLength": 3},
                       "target": {"type": "string", "minLength": 3, "maxLength": 3}}}),
    ("create_event", "Put a team meeting on my calendar for tomorrow, 30 minutes. Use the tool.", {
        "type": "object", "additionalProperties": False, "required": ["title", "minutes"],
        "properties": {"title": {"type": "string", "minLength": 1},
                       "minutes": {"type": "integer", "minimum": 1}}}),
)


def tool_problems(result: ChatResult, name: str, parameters: dict[str, Any]) -> list[str]:
    """Why the reply is not a valid call of `name` (empty when it is)."""
    calls = [c for c in result.tool_calls if isinstance(c, dict)]
    if not calls:
        return ["no tool call"]
    function = calls[0].get("function") or {}
    if function.get("name") != name:
        return [f"called {function.get('name')!r}, expected {name!r}"]
    try:
        arguments = json.loads(function.get("arguments") or "")
    except (TypeError, ValueError) as exc:
        return [f"arguments are not JSON: {exc}"]
    if not isinstance(arguments, dict):
        return ["arguments are not a JSON object"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in Draft202012Validator(parameters).iter_errors(arguments)][:5]


@register("tool_calling", requires="tools", planned=lambda prompts=6, **_: prompts,
          description="The model calls the declared function with valid JSON arguments.")
def tool_calling(prompts: int = 6, max_tokens: int = 256) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            name, prompt, parameters = TASKS[index % len(TASKS)]
            prompt_id = f"tool-{name}-{index}"
            tools = [{"type": "function", "function": {
                "name": name, "description": f"The {name.replace('_', ' ')} service.",
                "parameters": parameters}}]
            summary = {"endpoint": "chat", "prompt_id": prompt_id, "prompt": prompt,
                       "max_tokens": max_tokens, "tools": [name]}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                    tools=tools))
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            problems = tool_problems(result, name, parameters)
            return chat_sample(index, prompt_id, not problems, summary, result,
                               {"problems": problems, "tool_calls": result.tool_calls[:3]})

        return await run_samples(ctx, range(prompts), grade)

    return check
