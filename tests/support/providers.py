"""An endpoint in process for the engine's unit tests (no HTTP): what a check sees of a
provider, answering each chat with `reply(request)`."""

from __future__ import annotations

from collections.abc import Callable

from app.certification.providers.base import ChatRequest, ChatResult, EmbeddingResult, ModelList


class FakeProvider:
    """`reply(request)` gives the chat's result, or only its text (a 200 in 1 ms), or raises;
    the requests are kept in order. It lists model "m" and embeds every text alike."""

    name = "fake"
    model = "m"

    def __init__(self, reply: Callable[[ChatRequest], ChatResult | str]) -> None:
        self.reply = reply
        self.requests: list[ChatRequest] = []

    async def list_models(self) -> ModelList:
        return ModelList(["m"], 200, 1.0)

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        answer = self.reply(request)
        if isinstance(answer, ChatResult):
            return answer
        return ChatResult(text=answer, status_code=200, latency_ms=1.0)

    async def embed(self, texts: list[str], model: str | None = None) -> EmbeddingResult:
        return EmbeddingResult([[1.0, 0.0]] * len(texts), 200, 1.0)
