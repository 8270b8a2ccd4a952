"""Context-window needle: a code hidden in filler sized to the target's declared context.

Filler fills `fill_ratio` of the declared `context_length` at ~4 characters per token (a
conservative estimate for English text), capped at `max_tokens_tested`; a seeded random code
sits at a seeded depth. The reply passes when it contains the code.
"""

from __future__ import annotations

import random

from app.certification.checks import (
    CheckContext,
    CheckFn,
    SampleList,
    chat_sample,
    error_sample,
    register,
    run_samples,
)
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Sample

CHARS_PER_TOKEN = 4
SUBJECTS = ("The harbour", "A quiet library", "The old railway", "An orchard", "The market",
            "A mountain village", "The river delta", "A small observatory")
ACTIONS = ("opened at dawn", "was repainted in spring", "kept careful records",
           "welcomed travellers", "survived a long winter", "hosted a festival",
           "changed owners twice", "was mapped by surveyors")
DETAILS = ("according to local notes.", "as the archive recalls.", "for many decades.",
           "without much fuss.", "despite the weather.", "to everyone's surprise.")
QUESTION = "What is the secret code mentioned in the text above? Reply with the code only."


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


@register("context_needle", requires="context_length",
          planned=lambda samples=4, **_: samples,
          description="A code hidden in filler at the declared context length is retrieved.")
def context_needle(samples: int = 4, fill_ratio: float = 0.8, seed: int = 7,
                   max_tokens_tested: int = 131072, max_tokens: int = 32) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        declared = int(ctx.target.capabilities.get("context_length") or 0)
        tokens = min(int(declared * fill_ratio), max_tokens_tested)
        chars = tokens * CHARS_PER_TOKEN

        async def grade(index: int, _: int) -> Sample:
            rng = random.Random(seed * 1000 + index)
            code = needle_code(rng)
            depth = (index + 0.5) / samples
            prompt = haystack(chars, code, depth, rng) + "\n\n" + QUESTION
            prompt_id = f"needle-{index}"
            summary = {"endpoint": "chat", "prompt_id": prompt_id, "prompt_chars": len(prompt),
                       "approx_tokens": len(prompt) // CHARS_PER_TOKEN,
                       "depth": round(depth, 3), "max_tokens": max_tokens}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens))
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            found = code.lower() in result.text.lower()
            return chat_sample(index, prompt_id, found, summary, result, {"code": code})

        done = await run_samples(ctx, range(samples), grade)
        return SampleList(done, {"declared_context_length": declared, "tested_tokens": tokens,
                                 "fill_ratio": fill_ratio,
                                 "capped": declared * fill_ratio > max_tokens_tested})

    return check
