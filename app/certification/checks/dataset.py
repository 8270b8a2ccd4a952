"""The generic `dataset` check: a tenant's own acceptance criteria.

Each row of one of the suite's datasets fills a prompt template (system and user messages,
optionally tools or a response schema); the reply is graded by the check's grader
(checks.graders). Everything a tenant writes is validated before the suite is accepted:
the template's fields exist in every row, every row's expected value fits its grader, and
the grader fits the check (a JSON-constrained reply is not a bare letter).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.certification.checks import (
    CheckContext,
    CheckFn,
    Judgement,
    Problems,
    SampleList,
    graded_chats,
    register,
)
from app.certification.checks.graders import (
    Grader,
    JsonSchemaGrader,
    JudgeGrader,
    Reply,
    checked_schema,
)
from app.certification.checks.judged import calibrate, judged, unbound
from app.certification.checks.template import TemplateError, fields, render
from app.certification.providers.base import ChatRequest, ChatResult
from app.certification.results import Sample
from app.certification.suites import Rows

if TYPE_CHECKING:
    from app.certification.suites import CheckEntry


class Prompt(BaseModel):
    """The messages sent for each row: `{field}` templates (checks.template)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str | None = Field(None, max_length=20_000)
    user: str = Field(min_length=1, max_length=20_000)

    @field_validator("system", "user")
    @classmethod
    def _template(cls, text: str | None) -> str | None:
        if text is not None:
            try:
                fields(text)
            except TemplateError as exc:
                raise ValueError(str(exc)) from None
        return text

    def templates(self) -> list[str]:
        return [t for t in (self.system, self.user) if t is not None]

    def messages(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = []
        if self.system is not None:
            messages.append({"role": "system", "content": render(self.system, row)})
        messages.append({"role": "user", "content": render(self.user, row)})
        return messages


class Tool(BaseModel):
    """A function the model may call (OpenAI's function tool, without the wrapper)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field("", max_length=2000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})

    @field_validator("parameters")
    @classmethod
    def schema_ok(cls, schema: dict[str, Any]) -> dict[str, Any]:
        return checked_schema(schema)


class DatasetParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: str = Field(min_length=1, max_length=100)
    prompt: Prompt
    grader: Grader
    tools: list[Tool] | None = Field(None, min_length=1, max_length=16)
    response_schema: dict[str, Any] | None = None
    limit: int | None = Field(None, ge=1, le=10_000)
    max_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)

    @field_validator("response_schema")
    @classmethod
    def schema_ok(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if schema is None else checked_schema(schema)

    @model_validator(mode="after")
    def _grader_fits(self) -> DatasetParams:
        """Graders that cannot grade what this check asks for."""
        kind = self.grader.type
        if self.tools and self.response_schema is not None:
            raise ValueError("give tools or response_schema, not both")
        if self.tools and kind != "json_schema":
            raise ValueError(
                f"grader {kind!r} does not fit a check with tools: its replies are tool calls "
                "(grade their arguments with json_schema)"
            )
        if self.response_schema is not None and kind in ("choice", "numeric", "regex"):
            raise ValueError(
                f"grader {kind!r} does not fit a check with response_schema: its replies are "
                "JSON documents (grade them with json_schema)"
            )
        if isinstance(self.grader, JudgeGrader):
            self._calibration_rows_fit(self.grader)
        if isinstance(self.grader, JsonSchemaGrader):
            own = self.grader.schema_
            tool_schema = self.tools[0].parameters if self.tools else None
            if own is None and self.response_schema is None and tool_schema is None:
                raise ValueError(
                    "grader json_schema needs a schema: its own, the check's response_schema "
                    "or the tool's parameters"
                )
        return self

    def _calibration_rows_fit(self, grader: JudgeGrader) -> None:
        """Each calibration item's row holds every field the prompt, the rubric and the
        reference name: the judge is calibrated on the very prompt it grades."""
        wanted = [f for t in (*self.prompt.templates(), *grader.templates()) for f in fields(t)]
        for number, item in enumerate(grader.calibration):
            missing = [f for f in dict.fromkeys(wanted) if f not in item.row]
            if missing:
                raise ValueError(
                    f"calibration item {number} ({item.id}) has no row field {missing[0]!r} "
                    "(the prompt, rubric or reference names it): give it in its `row`"
                )

    def answer_schema(self) -> dict[str, Any] | None:
        return self.response_schema or (self.tools[0].parameters if self.tools else None)


def fits(params: DatasetParams, data: Mapping[str, Rows]) -> Problems:
    """What in the datasets does not fit the check: a missing dataset, a field a template
    names that a row lacks, a row whose expected value its grader cannot use."""
    rows = data.get(params.dataset)
    if rows is None:
        known = ", ".join(sorted(data)) or "none"
        return [
            {
                "loc": ["params", "dataset"],
                "msg": f"the suite has no dataset by this name (its datasets: {known})",
            }
        ]
    if not rows:
        return [{"loc": ["params", "dataset"], "msg": "the dataset has no rows"}]
    problems: Problems = []
    named = {
        ("prompt",): [f for t in params.prompt.templates() for f in fields(t)],
        ("grader",): [f for t in params.grader.templates() for f in fields(t)],
    }
    for number, row in enumerate(rows, 1):
        for where, wanted in named.items():
            missing = [f for f in dict.fromkeys(wanted) if f not in row]
            if missing:
                problems.append(
                    {
                        "loc": ["params", *where],
                        "msg": f"row {number} of dataset {params.dataset!r} has no field "
                        f"{missing[0]!r} (the template names it)",
                    }
                )
        if problems:
            break  # one row says it: the rest would repeat it
        prompt = "\n".join(str(m["content"]) for m in params.prompt.messages(row))
        problem = params.grader.row_problem(row, prompt)
        if problem:
            problems.append(
                {
                    "loc": ["params", "grader"],
                    "msg": f"row {number} of dataset {params.dataset!r}: {problem}",
                }
            )
            break
    return problems


def _rows(params: DatasetParams, data: Mapping[str, Rows]) -> Rows:
    rows = data.get(params.dataset, ())
    return rows[: params.limit] if params.limit else rows


def _planned(_datasets: Mapping[str, Rows] | None = None, **params: Any) -> int:
    return len(_rows(DatasetParams.model_validate(params), _datasets or {}))


@register(
    "dataset",
    planned=_planned,
    params_model=DatasetParams,
    fits=fits,
    sequential=True,
    description="The suite's own dataset: a prompt template per row, graded by the check's "
    "grader (exact, normalised, regex, numeric, choice, json_schema, contains_all/none, "
    "judge).",
)
def dataset(**raw: Any) -> CheckFn:
    params = DatasetParams.model_validate(raw)

    async def check(ctx: CheckContext) -> list[Sample]:
        grader = params.grader
        judge_record: dict[str, Any] | None = None
        if isinstance(grader, JudgeGrader):  # the judge is calibrated before its grades count
            bound = ctx.judges.get(grader.judge)
            if bound is None:
                return unbound(grader.judge)
            calibration = await calibrate(bound, grader, params.prompt.messages)
            if not calibration.passed:
                return calibration.refusal()
            judge_record = calibration.record()
        rows = list(enumerate(_rows(params, ctx.datasets), 1))
        tools = (
            [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in params.tools
            ]
            if params.tools
            else None
        )
        response_format = (
            {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": params.response_schema},
            }
            if params.response_schema is not None
            else None
        )

        def ask(
            index: int, item: tuple[int, dict[str, Any]]
        ) -> tuple[str, ChatRequest, dict[str, Any]]:
            number, row = item
            request = ChatRequest(
                messages=params.prompt.messages(row),
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                tools=tools,
                response_format=response_format,
            )
            prompt_id = str(row.get("id", f"row-{number}"))[:200]
            return prompt_id, request, {"dataset": params.dataset, "row": number}

        async def grade(
            item: tuple[int, dict[str, Any]], request: ChatRequest, result: ChatResult
        ) -> Judgement:
            _, row = item
            prompt = "\n".join(str(m["content"]) for m in request.messages)
            reply = Reply(result, prompt)
            if not reply.text.strip() and reply.tool_call is None:
                return Judgement(False, "empty")
            if isinstance(grader, JsonSchemaGrader):
                return grader.grade(row, reply, params.answer_schema())
            if isinstance(grader, JudgeGrader):
                return await judged(ctx.judges[grader.judge], grader, row, request, reply)
            return grader.grade(row, reply)

        samples = await graded_chats(ctx, rows, ask, grade)
        if judge_record is None:
            return samples
        return SampleList(samples, {"judge": judge_record})

    return check


def judges_named(checks: Iterable[CheckEntry]) -> dict[str, list[str]]:
    """The judges a suite's checks name (their logical names), each with the checks that
    name it: what a run must bind to endpoints."""
    named: dict[str, list[str]] = {}
    for entry in checks:
        if entry.name != "dataset":
            continue
        grader = entry.params.get("grader")
        if isinstance(grader, dict) and grader.get("type") == "judge":
            named.setdefault(str(grader.get("judge")), []).append(entry.key)
    return named
