"""Basic chat: the model follows a simple instruction, replying with exactly the token asked.

The whole reply is graded (checks.grading): "apple-1" or "`apple-1`." pass; "Sure: apple-1"
and any reply that repeats the prompt fail, even though both contain the token.
"""

from __future__ import annotations

from typing import Any

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Judgement,
    graded_chats,
    register,
)
from app.certification.checks.grading import exact_reply, failure_reason
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample

WORDS = (
    "apple",
    "river",
    "falcon",
    "copper",
    "meadow",
    "violet",
    "harbor",
    "summit",
    "lantern",
    "pepper",
    "glacier",
    "orchid",
    "canyon",
    "marble",
    "tundra",
    "ember",
)


def chat_prompt(index: int) -> tuple[str, str]:
    """(prompt, the token the reply must be)."""
    token = f"{WORDS[index % len(WORDS)]}-{index + 1}"
    return f"Reply with exactly this token and nothing else: {token}", token


def judge_token(token: str, prompt: str, result: ChatResult) -> Judgement:
    """Passed when the whole reply is the token; else why not."""
    if exact_reply(result.text, token):
        return Judgement(True, detail={"expected": token})
    return Judgement(
        False, failure_reason(result.text, prompt, result.finish_reason), {"expected": token}
    )


@register(
    "chat",
    planned=lambda prompts=10, **_: prompts,
    description="A chat completion replies with exactly the token the instruction asks.",
)
def chat(prompts: int = 10, max_tokens: int = 32) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        def ask(index: int, _: int) -> tuple[str, ChatRequest, dict[str, Any]]:
            prompt, _token = chat_prompt(index)
            return (
                f"chat-{index}",
                ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens),
                {},
            )

        def judge(index: int, request: ChatRequest, result: ChatResult) -> Judgement:
            prompt, token = chat_prompt(index)
            return judge_token(token, prompt, result)

        return await graded_chats(ctx, range(prompts), ask, judge)

    return check
