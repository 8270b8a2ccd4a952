"""A dataset check graded by a judge model: calibration first, then each reply judged.

The echo rule comes before the judge (grade the answer, never the reply's neighbourhood):
a reply that repeats its prompt fails without being judged. A judge that gives no verdict
makes the sample an error (`judge_error`, `judge_unparseable`), never a fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.certification.checks import Decided, Judgement, SampleList
from app.certification.checks.graders import CalibrationItem, JudgeGrader, Reply
from app.certification.checks.grading import ECHOED, echoes_prompt
from app.certification.checks.judging import (
    JUDGE_UNBOUND,
    JUDGE_UNCALIBRATED,
    PROMPT_EVIDENCE_CHARS,
    Judge,
    JudgeFailed,
    Verdict,
    ask,
    cut,
)
from app.certification.providers.base import ChatRequest, scrub
from app.certification.results import CheckOutcome

Messages = Callable[[Mapping[str, Any]], list[dict[str, Any]]]


def question_of(messages: list[dict[str, Any]]) -> str:
    """What the candidate was asked: its last user message."""
    return next((str(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")


@dataclass(frozen=True)
class ItemGraded:
    """One calibration item as the judge graded it."""

    item: CalibrationItem
    prompt: str
    verdict: Verdict | None
    failure: JudgeFailed | None

    @property
    def agreed(self) -> bool:
        return self.verdict is not None and self.verdict.passed == (self.item.expected == "pass")

    def record(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.item.id, "expected": self.item.expected}
        if self.verdict is not None:
            record |= {"agreed": self.agreed} | self.verdict.evidence(name)
        elif self.failure is not None:
            record |= {"agreed": False} | failure_evidence(name, self.prompt, self.failure)
        return record

    def wrong(self) -> str:
        """How this item was misgraded, for the check's explanation."""
        if self.failure is not None:
            return f"{self.item.id} ({self.failure.cause})"
        judged = "pass" if self.item.expected == "fail" else "fail"
        return f"{self.item.id} (expected {self.item.expected}, judged {judged})"


@dataclass(frozen=True)
class Calibration:
    """The judge's grades of its rubric's calibration set."""

    judge: Judge
    items: tuple[ItemGraded, ...]

    @property
    def passed(self) -> bool:
        return all(item.agreed for item in self.items)

    def summary(self) -> dict[str, Any]:
        """What a certificate signs of the calibration (checks' `judge` summary)."""
        return {
            "passed": self.passed,
            "items": len(self.items),
            "agreed": sum(1 for item in self.items if item.agreed),
            "misgraded": [item.item.id for item in self.items if item.verdict and not item.agreed],
            "errored": [item.item.id for item in self.items if item.failure is not None],
        }

    def record(self) -> dict[str, Any]:
        """The check's `judge` details: who judged, and the calibration with its evidence."""
        return {
            "name": self.judge.name,
            **dict(self.judge.spec),
            "calibration": self.summary()
            | {"results": [item.record(self.judge.name) for item in self.items]},
        }

    def refusal(self) -> SampleList:
        """The check's result when the judge misgraded its calibration: errored, with no
        candidate sample sent (the judge's grades would not count)."""
        wrong = [item.wrong() for item in self.items if not item.agreed]
        summary = self.summary()
        counts = []
        if summary["misgraded"]:
            counts.append(f"misgraded {len(summary['misgraded'])}")
        if summary["errored"]:
            counts.append(f"could not grade {len(summary['errored'])}")
        explanation = (
            f"judge {self.judge.name!r} is not calibrated: it {' and '.join(counts)} of "
            f"{len(self.items)} calibration answers ({', '.join(wrong[:5])})"
        )
        decided = Decided(CheckOutcome.ERRORED, None, None, None, None, explanation)
        details = {"cause": JUDGE_UNCALIBRATED, "judge": self.record()}
        return SampleList([], details, decided)


async def calibrate(judge: Judge, grader: JudgeGrader, messages: Messages) -> Calibration:
    """The judge grades every calibration item (concurrently, within its own limit)."""

    async def one(item: CalibrationItem) -> ItemGraded:
        question = question_of(messages(item.row))
        prompt = grader.prompt(item.row, question, item.answer)
        try:
            return ItemGraded(item, prompt, await ask(judge, prompt, grader.max_tokens), None)
        except JudgeFailed as exc:
            return ItemGraded(item, prompt, None, exc)

    graded = await asyncio.gather(*(one(item) for item in grader.calibration))
    return Calibration(judge, tuple(graded))


def failure_evidence(name: str, prompt: str, failure: JudgeFailed) -> dict[str, Any]:
    """What is kept of a judgement that could not be given: the prompt, the cause, and the
    judge's reply when it gave one."""
    evidence: dict[str, Any] = {
        "name": name,
        "prompt": cut(scrub(prompt), PROMPT_EVIDENCE_CHARS),
        "error_cause": failure.cause,
        "error": failure.message,
    }
    if failure.raw is not None:
        evidence["verdict"] = failure.raw
    return evidence


def unbound(name: str) -> SampleList:
    """The run was given no endpoint for the judge the check names: errored, not run."""
    explanation = f"no endpoint was bound to judge {name!r}: nothing could be graded"
    decided = Decided(CheckOutcome.ERRORED, None, None, None, None, explanation)
    return SampleList([], {"cause": JUDGE_UNBOUND, "judge": {"name": name}}, decided)


async def judged(
    judge: Judge,
    grader: JudgeGrader,
    row: Mapping[str, Any],
    request: ChatRequest,
    reply: Reply,
) -> Judgement:
    """One reply graded by the judge, after the echo rule."""
    if echoes_prompt(reply.text, reply.prompt):
        return Judgement(False, ECHOED, {"judge": {"name": judge.name, "asked": False}})
    prompt = grader.prompt(row, question_of(request.messages), reply.text)
    try:
        verdict = await ask(judge, prompt, grader.max_tokens)
    except JudgeFailed as exc:
        evidence = failure_evidence(judge.name, prompt, exc)
        return Judgement(False, None, {"judge": evidence}, cause=exc.cause, error=exc.message)
    detail = {"judge": verdict.evidence(judge.name)}
    if verdict.passed:
        return Judgement(True, detail=detail)
    return Judgement(False, "judged_fail", detail)
