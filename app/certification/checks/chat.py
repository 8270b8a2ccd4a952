"""Basic chat: the model follows a simple instruction with a verifiable, non-empty reply."""

from __future__ import annotations

from app.certification.checks import (
    CheckContext,
    CheckFn,
    error_sample,
    excerpt,
    register,
    run_samples,
)
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Grade, Sample

WORDS = ("apple", "river", "falcon", "copper", "meadow", "violet", "harbor", "summit",
         "lantern", "pepper", "glacier", "orchid", "canyon", "marble", "tundra", "ember")


def chat_prompt(index: int) -> tuple[str, str]:
    """(prompt, the token the reply must contain)."""
    token = f"{WORDS[index % len(WORDS)]}-{index + 1}"
    return f"Reply with exactly this token and nothing else: {token}", token


@register("chat", planned=lambda prompts=10, **_: prompts,
          description="A chat completion returns a non-empty reply that follows the instruction.")
def chat(prompts: int = 10, max_tokens: int = 32) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            prompt, token = chat_prompt(index)
            summary = {"endpoint": "chat/completions", "prompt_id": f"chat-{index}",
                       "max_tokens": max_tokens, "prompt": prompt}
            try:
                result = await ctx.provider.chat(
                    ChatRequest(messages=[{"role": "user", "content": prompt}],
                                max_tokens=max_tokens)
                )
            except EndpointError as exc:
                return error_sample(index, f"chat-{index}", exc, summary)
            reply = result.text.strip()
            ok = bool(reply) and token.lower() in reply.lower()
            return Sample(
                index=index, prompt_id=f"chat-{index}", grade=Grade.PASS if ok else Grade.FAIL,
                request_summary=summary, response_excerpt=excerpt(result.text),
                latency_ms=result.latency_ms, status_code=result.status_code,
                detail={"expected_token": token, "empty": not reply},
            )

        return await run_samples(ctx, range(prompts), grade)

    return check
