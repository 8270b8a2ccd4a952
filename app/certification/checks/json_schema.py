"""JSON-schema output: with response_format json_schema, the reply parses and validates."""

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
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Sample

TASKS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("city", "Describe the city of Lisbon as JSON: its name, country and population.", {
        "type": "object", "additionalProperties": False,
        "required": ["name", "country", "population"],
        "properties": {"name": {"type": "string", "minLength": 1},
                       "country": {"type": "string", "minLength": 1},
                       "population": {"type": "integer", "minimum": 0}}}),
    ("book", "Give a book recommendation as JSON with title, author, year and genres.", {
        "type": "object", "additionalProperties": False,
        "required": ["title", "author", "year", "genres"],
        "properties": {"title": {"type": "string"}, "author": {"type": "string"},
                       "year": {"type": "integer", "minimum": 1000, "maximum": 2100},
                       "genres": {"type": "array", "items": {"type": "string"},
                                  "minItems": 1}}}),
    ("sentiment", "Classify the sentiment of 'I loved this film' as JSON.", {
        "type": "object", "additionalProperties": False, "required": ["label", "confidence"],
        "properties": {"label": {"enum": ["positive", "negative", "neutral"]},
                       "confidence": {"type": "number", "minimum": 0, "maximum": 1}}}),
    ("todo", "Return a to-do item as JSON: a task, whether it is done, and its priority.", {
        "type": "object", "additionalProperties": False, "required": ["task", "done", "priority"],
        "properties": {"task": {"type": "string"}, "done": {"type": "boolean"},
                       "priority": {"type": "integer", "minimum": 1, "maximum": 5}}}),
)


def schema_errors(text: str, schema: dict[str, Any]) -> list[str]:
    """Why `text` is not a JSON document valid against `schema` (empty when it is)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
            for e in Draft202012Validator(schema).iter_errors(value)][:5]


@register("json_schema", requires="json_schema", planned=lambda prompts=8, **_: prompts,
          description="Structured output: the reply is JSON valid against the requested schema.")
def json_schema(prompts: int = 8, max_tokens: int = 256) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            name, prompt, schema = TASKS[index % len(TASKS)]
            prompt_id = f"json-{name}-{index}"
            response_format = {"type": "json_schema",
                               "json_schema": {"name": name, "schema": schema, "strict": True}}
            summary = {"endpoint": "chat", "prompt_id": prompt_id, "prompt": prompt,
                       "max_tokens": max_tokens, "response_format": "json_schema:" + name}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                    response_format=response_format))
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            errors = schema_errors(result.text, schema)
            return chat_sample(index, prompt_id, not errors, summary, result,
                               {"schema_errors": errors})

        return await run_samples(ctx, range(prompts), grade)

    return check
