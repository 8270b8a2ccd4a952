"""Embeddings: one dimension throughout, and similar texts closer (cosine) than unrelated ones.

Each sample embeds (anchor, paraphrase, unrelated) in one request; it passes when all three
vectors are non-zero, have the check's common dimension (the most frequent one, or the
target's declared `embedding_dimensions`), and cos(anchor, paraphrase) > cos(anchor, unrelated).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

from app.certification.checks import (
    CheckContext,
    CheckFn,
    SampleList,
    error_sample,
    register,
    run_samples,
)
from app.certification.providers.base import EndpointError
from app.certification.results import Grade, Sample

TRIPLES = (
    (
        "The cat sat on the mat.",
        "A cat was sitting on the mat.",
        "Quarterly revenue grew by five percent.",
    ),
    (
        "How do I reset my password?",
        "I need to reset my account password.",
        "The volcano erupted last night.",
    ),
    (
        "The train to Paris leaves at noon.",
        "At noon the Paris train departs.",
        "Photosynthesis converts light into chemical energy.",
    ),
    (
        "She plays the violin beautifully.",
        "Her violin playing is beautiful.",
        "Interest rates rose again this month.",
    ),
    (
        "Fresh bread smells wonderful in the morning.",
        "In the morning fresh bread smells great.",
        "The server returned an internal error.",
    ),
    (
        "Dogs love long walks in the park.",
        "Long walks in the park make dogs happy.",
        "The committee approved the new budget.",
    ),
    (
        "Solar panels turn sunlight into electricity.",
        "Sunlight becomes electricity in solar panels.",
        "My grandmother knits warm scarves.",
    ),
    (
        "The museum opens at nine on Sundays.",
        "On Sundays the museum opens at nine.",
        "Glaciers carve deep valleys over millennia.",
    ),
    (
        "He forgot his umbrella in the rain.",
        "In the rain he forgot his umbrella.",
        "The compiler optimises inner loops.",
    ),
    (
        "Tea is popular in Britain.",
        "In Britain tea is very popular.",
        "The rocket reached orbit after launch.",
    ),
    (
        "The children built a sandcastle on the beach.",
        "On the beach the children built a sandcastle.",
        "Stock prices fell sharply on Monday.",
    ),
    (
        "Please close the window, it is cold.",
        "It is cold, please close the window.",
        "Bees pollinate many flowering plants.",
    ),
)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@register(
    "embeddings",
    requires="embeddings",
    planned=lambda triples=12, **_: triples,
    description="One dimension; a paraphrase ranks above an unrelated text.",
)
def embeddings(triples: int = 12) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        model = ctx.target.capabilities.get("embedding_model") or None

        async def grade(index: int, triple: tuple[str, str, str]) -> Sample:
            prompt_id = f"embed-{index}"
            summary = {
                "endpoint": "embeddings",
                "prompt_id": prompt_id,
                "model": model,
                "inputs": list(triple),
            }
            try:
                result = await ctx.provider.embed(list(triple), model=model)
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            vectors = result.vectors
            dims = sorted({len(v) for v in vectors})
            problems = []
            if len(vectors) != 3:
                problems.append(f"{len(vectors)} vectors for 3 inputs")
            elif len(dims) != 1:
                problems.append(f"mixed dimensions {dims}")
            elif any(not any(v) for v in vectors):
                problems.append("zero vector")
            near = far = None
            if not problems:
                near, far = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
                if near <= far:
                    problems.append("paraphrase not closer than unrelated text")
            return Sample(
                index=index,
                prompt_id=prompt_id,
                grade=Grade.FAIL if problems else Grade.PASS,
                request_summary=summary,
                latency_ms=result.latency_ms,
                status_code=result.status_code,
                detail={
                    "dimension": dims[0] if len(dims) == 1 else None,
                    "problems": problems,
                    "cos_paraphrase": None if near is None else round(near, 4),
                    "cos_unrelated": None if far is None else round(far, 4),
                },
            )

        items = [TRIPLES[i % len(TRIPLES)] for i in range(triples)]
        samples = await run_samples(ctx, items, grade)
        declared = ctx.target.capabilities.get("embedding_dimensions")
        seen = Counter(s.detail.get("dimension") for s in samples if s.detail.get("dimension"))
        expected = int(declared) if declared else (seen.most_common(1)[0][0] if seen else None)
        graded = []
        for s in samples:
            dim = s.detail.get("dimension")
            if s.grade is Grade.PASS and dim != expected:
                s = dataclasses.replace(
                    s,
                    grade=Grade.FAIL,
                    detail={**s.detail, "problems": [f"dimension {dim}, expected {expected}"]},
                )
            graded.append(s)
        return SampleList(graded, {"dimension": expected, "dimensions_seen": dict(seen)})

    return check
