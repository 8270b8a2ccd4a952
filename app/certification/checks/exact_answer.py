"""Exact-answer QA: short factual questions from a shipped dataset, normalised matching."""

from __future__ import annotations

from typing import Any

from app.certification.checks import (
    CheckContext,
    CheckFn,
    error_sample,
    excerpt,
    register,
    run_samples,
)
from app.certification.checks.datasets import load_jsonl
from app.certification.checks.normalize import matches, normalize_answer
from app.certification.providers.base import ChatRequest, EndpointError
from app.certification.results import Grade, Sample

INSTRUCTION = "Answer with only the answer: no sentence, no explanation."


def qa_prompt(question: str) -> str:
    return f"{INSTRUCTION}\nQuestion: {question}"


def _items(dataset: str, limit: int | None) -> list[dict[str, Any]]:
    items = list(load_jsonl(dataset))
    return items[:limit] if limit else items


def _planned(dataset: str = "qa-basic.jsonl", limit: int | None = None, **_: Any) -> int:
    return len(_items(dataset, limit))


@register("exact_answer", planned=_planned,
          description="Short factual questions answered exactly (normalised matching).")
def exact_answer(dataset: str = "qa-basic.jsonl", limit: int | None = None,
                 max_tokens: int = 16) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        async def grade(index: int, item: dict[str, Any]) -> Sample:
            prompt_id = str(item.get("id", f"qa-{index}"))
            prompt = qa_prompt(str(item["question"]))
            summary = {"endpoint": "chat", "dataset": dataset, "prompt_id": prompt_id,
                       "max_tokens": max_tokens, "temperature": 0.0, "prompt": prompt}
            try:
                result = await ctx.provider.chat(ChatRequest(
                    messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens))
            except EndpointError as exc:
                return error_sample(index, prompt_id, exc, summary)
            answers = [str(a) for a in item["answers"]]
            ok = matches(result.text, answers)
            return Sample(
                index=index, prompt_id=prompt_id, grade=Grade.PASS if ok else Grade.FAIL,
                request_summary=summary, response_excerpt=excerpt(result.text),
                latency_ms=result.latency_ms, status_code=result.status_code,
                detail={"expected": answers, "normalised_reply": normalize_answer(result.text)},
            )

        return await run_samples(ctx, _items(dataset, limit), grade)

    return check
