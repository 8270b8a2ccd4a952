"""Connectivity and model honesty: GET /models answers and lists the target's model, and a
one-word chat names the model asked for.

A sample is one listing (the first also one short chat, when the model is listed); it
passes when the model is listed and, for the first, the chat's reply names that model (or a
snapshot of it, see grading.model_matches). Every later chat's evidence records the model it
names too, flagged when it is another. Servers that answer 200 for any model name are common
(llama.cpp, some proxies): a name they do not list fails here, and the engine stops the
certification (cause `model_not_listed`) rather than grade replies of some other model.
"""

from __future__ import annotations

from app.certification.checks import (
    CheckContext,
    CheckFn,
    SampleList,
    error_sample,
    register,
    run_samples,
)
from app.certification.checks.grading import model_matches
from app.certification.providers.base import ChatRequest, EndpointError, ErrorCause
from app.certification.results import Grade, Sample

PROBE = "Reply with the word OK."


@register(
    "connectivity",
    planned=lambda repeats=5, **_: repeats,
    description="The endpoint lists the target's model and its replies name that model.",
)
def connectivity(repeats: int = 5, probe_chat: bool = True) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        asked = ctx.provider.model

        async def grade(index: int, _: int) -> Sample:
            summary = {"method": "GET", "path": "/models", "model": asked}
            try:
                listing = await ctx.provider.list_models()
            except EndpointError as exc:
                return error_sample(index, f"models-{index}", exc, summary)
            listed = asked in listing.models
            detail: dict[str, object] = {"model_listed": listed, "models": len(listing.models)}
            served = None
            cause = None if listed else ErrorCause.MODEL_NOT_LISTED
            if listed and probe_chat and index == 0:
                summary = summary | {"probe": PROBE}
                try:
                    reply = await ctx.provider.chat(
                        ChatRequest(messages=[{"role": "user", "content": PROBE}], max_tokens=4)
                    )
                except EndpointError as exc:
                    return error_sample(index, f"models-{index}", exc, summary)
                served = reply.raw_model
                if not model_matches(asked, served):
                    cause = ErrorCause.MODEL_MISMATCH
                    detail["model_mismatch"] = True
            if cause:
                detail["reason"] = cause
            return Sample(
                index=index,
                prompt_id=f"models-{index}",
                grade=Grade.FAIL if cause else Grade.PASS,
                request_summary=summary,
                response_excerpt=", ".join(listing.models[:20]),
                latency_ms=listing.latency_ms,
                status_code=listing.status_code,
                error_cause=cause,
                detail=detail,
                served_model=served,
            )

        samples = await run_samples(ctx, range(repeats), grade)
        answered = [s for s in samples if s.grade is not Grade.ERROR]
        return SampleList(
            samples,
            {
                "model": asked,
                "model_listed": bool(answered)
                and all(s.detail.get("model_listed") for s in answered),
                "model_mismatches": sum(bool(s.detail.get("model_mismatch")) for s in answered),
            },
        )

    return check
