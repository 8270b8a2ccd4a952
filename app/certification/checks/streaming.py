"""Streaming: SSE chunks are well-formed, the first token's time is recorded, the stream ends
with its completion marker (`[DONE]`, or `message_stop` on Anthropic).

A malformed chunk or a cut stream is the endpoint misbehaving at exactly what this check
tests, so such a sample is graded FAIL (not ERROR), with the precise cause in its evidence
(`error_cause`: malformed_body or stream_incomplete). Connection errors, timeouts, 5xx and
429 after retries stay ERROR: they say nothing about the streaming format.
"""

from __future__ import annotations

from app.certification.checks import (
    CheckContext,
    CheckFn,
    chat_sample,
    error_sample,
    register,
    run_samples,
)
from app.certification.checks.chat import chat_prompt
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Sample


@register("streaming", requires="streaming", planned=lambda prompts=8, **_: prompts,
          description="SSE streaming: well-formed chunks, TTFT recorded, ends with [DONE].")
def streaming(prompts: int = 8, max_tokens: int = 32) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            prompt, token = chat_prompt(index)
            prompt_id = f"stream-{index}"
            summary = {"endpoint": "chat", "stream": True, "prompt_id": prompt_id,
                       "prompt": prompt, "max_tokens": max_tokens}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                    stream=True))
            except EndpointError as exc:  # malformed chunks and cut streams grade as failures
                return error_sample(index, prompt_id, exc, summary)
            problems = []
            if not result.done_marker:
                problems.append("no completion marker")
            if result.chunks < 1 or result.ttft_ms is None:
                problems.append("no content chunk")
            if token.lower() not in result.text.lower():
                problems.append("reply lacks the requested token")
            return chat_sample(index, prompt_id, not problems, summary, result,
                               {"chunks": result.chunks, "done_marker": result.done_marker,
                                "problems": problems})

        return await run_samples(ctx, range(prompts), grade)

    return check
