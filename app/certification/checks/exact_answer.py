"""Exact-answer QA: short factual questions from a shipped dataset, normalised matching.

The whole reply, normalised (checks.normalize), must equal an accepted answer: "Paris."
matches "Paris"; "The capital is Paris", "Paris or Lyon" and a reply that repeats the
question do not (the prompt asks for the bare answer).
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
from app.certification.checks.datasets import load_jsonl
from app.certification.checks.grading import failure_reason
from app.certification.checks.normalize import matches, normalize_answer
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample

INSTRUCTION = "Answer with only the answer: no sentence, no explanation."


def qa_prompt(question: str) -> str:
    return f"{INSTRUCTION}\nQuestion: {question}"


def _items(dataset: str, limit: int | None) -> list[dict[str, Any]]:
    items = list(load_jsonl(dataset))
    return items[:limit] if limit else items


def _planned(dataset: str = "qa-basic.jsonl", limit: int | None = None, **_: Any) -> int:
    return len(_items(dataset, limit))


@register(
    "exact_answer",
    planned=_planned,
    sequential=True,
    description="Short factual questions answered exactly (normalised matching).",
)
def exact_answer(
    dataset: str = "qa-basic.jsonl", limit: int | None = None, max_tokens: int = 16
) -> CheckFn:
    async def check(ctx: CheckContext) -> list[Sample]:
        def ask(index: int, item: dict[str, Any]) -> tuple[str, ChatRequest, dict[str, Any]]:
            prompt = qa_prompt(str(item["question"]))
            return (
                str(item.get("id", f"qa-{index}")),
                ChatRequest(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens),
                {"dataset": dataset},
            )

        def judge(item: dict[str, Any], request: ChatRequest, result: ChatResult) -> Judgement:
            answers = [str(a) for a in item["answers"]]
            detail = {"expected": answers, "normalised_reply": normalize_answer(result.text)}
            if matches(result.text, answers):
                return Judgement(True, detail=detail)
            prompt = str(request.messages[-1]["content"])
            return Judgement(
                False, failure_reason(result.text, prompt, result.finish_reason), detail
            )

        return await graded_chats(ctx, _items(dataset, limit), ask, judge)

    return check
