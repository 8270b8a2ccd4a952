"""Streaming: SSE chunks are well-formed, carry the answer, and the stream ends with its
completion marker (`[DONE]`, or `message_stop` on Anthropic); the first token's time is
recorded.

A malformed chunk, a cut stream and a stream that ends with no content (a server that
answers competing streams with the role chunk and `[DONE]`) are the endpoint misbehaving at
exactly what this check tests: such a sample is graded FAIL, not ERROR, with the precise
cause in its evidence (`malformed_body`, `stream_incomplete`, `stream_empty`). A complete
stream is graded like `chat`: the streamed text must be exactly the token asked.
Connection errors, timeouts, 5xx and 429 after retries stay ERROR.
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
from app.certification.checks.chat import chat_prompt, judge_token
from app.certification.providers.base import ChatRequest, ChatResult, ErrorCause
from app.certification.results import Sample


def judge_stream(result: ChatResult) -> Judgement | None:
    """A stream that carried nothing fails as such; None when it carried content."""
    if result.content_chunks == 0 and not result.text:
        return Judgement(
            False,
            ErrorCause.STREAM_EMPTY,
            {"chunks": result.chunks, "done_marker": result.done_marker},
            cause=ErrorCause.STREAM_EMPTY,
        )
    return None


@register(
    "streaming",
    requires="streaming",
    planned=lambda prompts=8, **_: prompts,
    description="SSE streaming: well-formed chunks that carry the asked token, TTFT "
    "recorded, ends with [DONE].",
)
def streaming(prompts: int = 8, max_tokens: int = 32) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        def ask(index: int, _: int) -> tuple[str, ChatRequest, dict[str, Any]]:
            prompt, _token = chat_prompt(index)
            return (
                f"stream-{index}",
                ChatRequest(
                    messages=[{"role": "user", "content": prompt}],
                    max_tokens=max_tokens,
                    stream=True,
                ),
                {},
            )

        def judge(index: int, request: ChatRequest, result: ChatResult) -> Judgement:
            empty = judge_stream(result)
            if empty is not None:
                return empty
            prompt, token = chat_prompt(index)
            graded = judge_token(token, prompt, result)
            return Judgement(
                graded.passed,
                graded.reason,
                graded.detail
                | {
                    "chunks": result.chunks,
                    "content_chunks": result.content_chunks,
                    "done_marker": result.done_marker,
                },
            )

        return await graded_chats(ctx, range(prompts), ask, judge)

    return check
