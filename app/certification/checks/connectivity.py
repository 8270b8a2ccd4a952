"""Connectivity and model listing: GET /models answers and lists the target's model."""

from __future__ import annotations

from app.certification.checks import CheckContext, CheckFn, error_sample, register, run_samples
from app.certification.providers.base import EndpointError
from app.certification.results import Grade, Sample


@register("connectivity", planned=lambda repeats=5, **_: repeats,
          description="The endpoint answers the model listing and lists the target's model.")
def connectivity(repeats: int = 5) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, _: int) -> Sample:
            summary = {"method": "GET", "path": "/models"}
            try:
                listing = await ctx.provider.list_models()
            except EndpointError as exc:
                return error_sample(index, f"models-{index}", exc, summary)
            listed = ctx.target.model in listing.models
            return Sample(
                index=index, prompt_id=f"models-{index}",
                grade=Grade.PASS if listed else Grade.FAIL, request_summary=summary,
                response_excerpt=", ".join(listing.models[:20]),
                latency_ms=listing.latency_ms, status_code=listing.status_code,
                detail={"model_listed": listed, "models": len(listing.models)},
            )

        return await run_samples(ctx, range(repeats), grade)

    return check
