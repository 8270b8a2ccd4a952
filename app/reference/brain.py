"""What the reference model answers. `good` answers right, `wrong` answers wrong, on purpose.

The answers come from the prompts themselves and the datasets shipped with the suites, so a
check's verdict against the reference endpoint reflects what the endpoint did.
"""

from __future__ import annotations

import re
from typing import Any

TOKEN_PROMPT = re.compile(r"Reply with exactly this token and nothing else:\s*(\S+)")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def answer(messages: list[dict[str, Any]], correct: bool) -> str:
    text = last_user_text(messages)
    match = TOKEN_PROMPT.search(text)
    if match:
        return match.group(1) if correct else "I would rather talk about something else."
    return "OK." if correct else "No."
