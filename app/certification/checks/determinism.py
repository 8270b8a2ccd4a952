"""Determinism at temperature 0: one prompt asked k times gives the same answer.

Each reply is a sample; it passes when it equals (after trimming whitespace) the most common
reply to its prompt, so k identical replies pass k samples and k distinct ones pass one. An
empty reply or one that repeats the prompt never passes: the same echo every time shows a
deterministic copy, not a deterministic answer.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from app.certification.checks import (
    CheckContext,
    CheckFn,
    SampleList,
    chat_sample,
    chat_summary,
    error_sample,
    register,
    run_samples,
)
from app.certification.checks.grading import ECHOED, EMPTY, echoes_prompt
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Grade, Sample

PROMPTS = (
    "Describe a lighthouse in one sentence.",
    "List three prime numbers greater than 50, separated by commas.",
    "Write a haiku about autumn rain.",
    "Explain in one sentence why the sky looks blue.",
)


@register(
    "determinism",
    planned=lambda prompts=4, repeats=5, **_: prompts * repeats,
    description="The same prompt at temperature 0 gives the same answer each time.",
)
def determinism(
    prompts: int = 4, repeats: int = 5, max_tokens: int = 64, seed: int | None = 1234
) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        items = [(p, r) for p in range(prompts) for r in range(repeats)]

        async def grade(index: int, item: tuple[int, int]) -> Sample:
            prompt = PROMPTS[item[0] % len(PROMPTS)]
            prompt_id = f"determinism-{item[0]}"
            request = ChatRequest(
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0.0,
                seed=seed,
            )
            summary = chat_summary(ctx, prompt_id, request, repeat=item[1], seed=seed)
            try:
                result = await ctx.provider.chat(request)
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            return chat_sample(
                index, prompt_id, True, summary, result, {"reply": result.text.strip()}
            )

        samples = await run_samples(ctx, items, grade)
        modal: dict[str, str] = {}
        for prompt_id in {s.prompt_id for s in samples}:
            replies = Counter(
                s.detail["reply"]
                for s in samples
                if s.prompt_id == prompt_id and "reply" in s.detail
            )
            if replies:
                modal[prompt_id] = replies.most_common(1)[0][0]
        graded = []
        for s in samples:
            if "reply" not in s.detail:  # errored, or a malformed answer (already a failure)
                graded.append(s)
                continue
            same = s.detail["reply"] == modal[s.prompt_id]
            detail: dict[str, object] = {"matches_most_common": same}
            if not s.detail["reply"]:
                detail["reason"] = EMPTY
            elif echoes_prompt(s.detail["reply"], str(s.request_summary.get("prompt", ""))):
                detail["reason"] = ECHOED
            elif not same:
                detail["reason"] = "not_modal"
            graded.append(
                dataclasses.replace(
                    s,
                    grade=Grade.FAIL if "reason" in detail else Grade.PASS,
                    detail={**{k: v for k, v in s.detail.items() if k != "reply"}, **detail},
                )
            )
        distinct = {
            pid: len({s.response_excerpt for s in samples if s.prompt_id == pid}) for pid in modal
        }
        return SampleList(graded, {"distinct_replies": distinct, "repeats": repeats})

    return check
