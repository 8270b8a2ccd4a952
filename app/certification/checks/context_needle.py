"""Context-window needle: a code hidden in filler sized to the target's declared context.

Filler fills `fill_ratio` of the declared `context_length` at ~4 characters per token (a
conservative estimate for English text), capped at `max_tokens_tested`; a seeded random code
sits at a seeded depth. The reply passes when it *is* the code: bare, or as "The secret code
is MC-…" (the needle sentence itself). The prompt holds the code, so containment would pass
a model that repeats its input.
"""

from __future__ import annotations

import random
import re
from typing import Any

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Judgement,
    SampleList,
    graded_chats,
    register,
)
from app.certification.checks.grading import bare, exact_reply, failure_reason
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample

CHARS_PER_TOKEN = 4
SUBJECTS = (
    "The harbour",
    "A quiet library",
    "The old railway",
    "An orchard",
    "The market",
    "A mountain village",
    "The river delta",
    "A small observatory",
)
ACTIONS = (
    "opened at dawn",
    "was repainted in spring",
    "kept careful records",
    "welcomed travellers",
    "survived a long winter",
    "hosted a festival",
    "changed owners twice",
    "was mapped by surveyors",
)
DETAILS = (
    "according to local notes.",
    "as the archive recalls.",
    "for many decades.",
    "without much fuss.",
    "despite the weather.",
    "to everyone's surprise.",
)
QUESTION = "What is the secret code mentioned in the text above? Reply with the code only."
FRAMING = re.compile(r"^(?:the\s+)?(?:secret\s+)?code\s*(?:is|:)\s*", re.I)


def is_code(reply: str, code: str) -> bool:
    """The reply is the code, alone or framed as the needle sentence."""
    return exact_reply(reply, code) or exact_reply(FRAMING.sub("", bare(reply)), code)


def needle_code(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "MC-" + "".join(rng.choice(alphabet) for _ in range(6))


def haystack(chars: int, code: str, depth: float, rng: random.Random) -> str:
    """Filler of about `chars` characters with the needle sentence at `depth` (0..1)."""
    sentences: list[str] = []
    size = 0
    while size < chars:
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(DETAILS)}"
        sentences.append(sentence)
        size += len(sentence) + 1
    sentences.insert(int(len(sentences) * depth), f"The secret code is {code}.")
    return " ".join(sentences)


@register(
    "context_needle",
    requires="context_length",
    planned=lambda samples=4, **_: samples,
    description="A code hidden in filler at the declared context length is retrieved.",
)
def context_needle(
    samples: int = 4,
    fill_ratio: float = 0.8,
    seed: int = 7,
    max_tokens_tested: int = 131072,
    max_tokens: int = 32,
) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        declared = int(ctx.target.capabilities.get("context_length") or 0)
        tokens = min(int(declared * fill_ratio), max_tokens_tested)
        chars = tokens * CHARS_PER_TOKEN

        def needle(index: int) -> tuple[str, str, float]:
            rng = random.Random(seed * 1000 + index)
            code = needle_code(rng)
            depth = (index + 0.5) / samples
            return code, haystack(chars, code, depth, rng) + "\n\n" + QUESTION, depth

        def ask(index: int, _: int) -> tuple[str, ChatRequest, dict[str, Any]]:
            _code, prompt, depth = needle(index)
            return (
                f"needle-{index}",
                ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens),
                {"approx_tokens": len(prompt) // CHARS_PER_TOKEN, "depth": round(depth, 3)},
            )

        def judge(index: int, request: ChatRequest, result: ChatResult) -> Judgement:
            code, prompt, _depth = needle(index)
            if is_code(result.text, code):
                return Judgement(True, detail={"code": code})
            return Judgement(
                False, failure_reason(result.text, prompt, result.finish_reason), {"code": code}
            )

        done = await graded_chats(ctx, range(samples), ask, judge)
        return SampleList(
            done,
            {
                "declared_context_length": declared,
                "tested_tokens": tokens,
                "fill_ratio": fill_ratio,
                "capped": declared * fill_ratio > max_tokens_tested,
            },
        )

    return check
