"""OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI, LiteLLM, OpenAI).

base_url ends in /v1."""

from __future__ import annotations

import json
from typing import Any

from app.certification.providers.base import (
    ChatRequest,
    ChatResult,
    EmbeddingResult,
    EndpointError,
    ErrorCause,
    ModelList,
    model_list,
    parse_usage,
    served_model,
)
from app.certification.providers.http import HttpClient, StreamReply, with_retries

MAX_TOKENS_CAP = 4096


class OpenAICompatible:
    name = "openai_compatible"

    def __init__(self, client: HttpClient, base_url: str, model: str) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.model = model

    async def list_models(self) -> ModelList:
        data, status, latency = await self.client.request_json("GET", f"{self.base_url}/models")
        return model_list(data, status, latency)

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": max(1, min(request.max_tokens, MAX_TOKENS_CAP)),
            "temperature": request.temperature,
        }
        if request.tools:
            payload["tools"] = request.tools
        if request.response_format:
            payload["response_format"] = request.response_format
        if request.seed is not None:
            payload["seed"] = request.seed
        return payload

    async def chat(self, request: ChatRequest) -> ChatResult:
        if request.stream:
            return await with_retries(
                self.client.policy, lambda: self._chat_stream(request), self.client.on_retry
            )
        data, status, latency = await self.client.request_json(
            "POST", f"{self.base_url}/chat/completions", self._payload(request)
        )
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            tool_calls = list(message.get("tool_calls") or [])
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise EndpointError(
                ErrorCause.MALFORMED_BODY,
                f"chat completion lacks choices[0].message ({exc!s})",
                status_code=status,
                latency_ms=latency,
            ) from None
        return ChatResult(
            text=text,
            status_code=status,
            latency_ms=latency,
            finish_reason=choice.get("finish_reason"),
            tool_calls=tool_calls,
            raw_model=served_model(data),
            usage=parse_usage(data.get("usage")),
        )

    async def _chat_stream(self, request: ChatRequest) -> ChatResult:
        payload = self._payload(request) | {"stream": True}
        url = f"{self.base_url}/chat/completions"
        async with self.client.stream_sse(url, payload) as (events, status, started):
            reply = StreamReply(status, started)
            async for data in events:
                if data == "[DONE]":
                    reply.done = True
                    break
                try:
                    event = json.loads(data)
                    # The last chunk may carry only usage (stream_options.include_usage).
                    choices = event["choices"]
                    choice = choices[0] if choices else {}
                    delta = choice.get("delta") or {}
                except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                    raise reply.malformed(data) from None
                reply.model = served_model(event) or reply.model
                reply.usage |= parse_usage(event.get("usage")) or {}
                content = delta.get("content")
                reply.add(str(content) if content else None, bool(delta.get("tool_calls")))
                reply.finish_reason = choice.get("finish_reason") or reply.finish_reason
        return reply.result("[DONE]")

    async def embed(self, texts: list[str], model: str | None = None) -> EmbeddingResult:
        """Embed texts with `model` (the target's embedding model) or else the chat model."""
        data, status, latency = await self.client.request_json(
            "POST", f"{self.base_url}/embeddings", {"model": model or self.model, "input": texts}
        )
        try:
            items = sorted(data["data"], key=lambda item: item.get("index", 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EndpointError(
                ErrorCause.MALFORMED_BODY,
                f"embeddings lack data[].embedding ({exc!s})",
                status_code=status,
                latency_ms=latency,
            ) from None
        return EmbeddingResult(vectors=vectors, status_code=status, latency_ms=latency)


def auth_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "modelcert/0.1"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
