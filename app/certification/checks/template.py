"""Prompt templates of a tenant's dataset check: `{field}` filled from a JSONL row.

A template is data, never code: the only syntax is `{field}` (a row's top-level key: letters,
digits and underscores) and `{{` / `}}` for a literal brace. No attribute access, no index,
no format specifiers, no expressions (no Jinja, no str.format, no eval): a suite is a
tenant's input and is filled in a worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]{0,63})\}|[{}]")


class TemplateError(ValueError):
    """A template that is not `{field}` text."""


def fields(template: str) -> list[str]:
    """The row fields a template names, in order; TemplateError for a stray brace."""
    named = []
    for match in PLACEHOLDER.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(
                f"stray {token!r} at character {match.start() + 1}: write {{{{ or }}}} for a "
                "literal brace, {field} for a row's field"
            )
        named.append(match.group(1))
    return named


def text_of(value: Any) -> str:
    """A row value as prompt text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(template: str, row: Mapping[str, Any]) -> str:
    """The template filled from `row` (every named field must be there: fields() is checked
    against every row before a suite is accepted)."""

    def fill(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return text_of(row[match.group(1)])

    return PLACEHOLDER.sub(fill, template)


def value(template: str, row: Mapping[str, Any]) -> Any:
    """A grader's expected value: a template that is exactly one `{field}` gives the row's
    value as it is (a number stays a number, a list of accepted answers stays a list);
    anything else is rendered text."""
    match = PLACEHOLDER.fullmatch(template)
    if match and match.group(1):
        return row[match.group(1)]
    return render(template, row)
