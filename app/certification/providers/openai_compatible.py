"""OpenAI-compatible servers (vLLM, Ollama, llama.cpp, TGI, LiteLLM, OpenAI).

base_url ends in /v1."""

from __future__ import annotations

import json
import time
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
    scrub,
    served_model,
)
from app.certification.providers.http import HttpClient, with_retries

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
        parts: list[str] = []
        chunks = content_chunks = 0
        ttft_ms: float | None = None
        finish_reason = model = None
        usage: dict[str, int] | None = None
        done = False
        async with self.client.stream_sse(f"{self.base_url}/chat/completions", payload) as (
            events,
            status,
            started,
        ):
            async for data in events:
                if data == "[DONE]":
                    done = True
                    break
                try:
                    event = json.loads(data)
                    # The last chunk may carry only usage (stream_options.include_usage).
                    choices = event["choices"]
                    choice = choices[0] if choices else {}
                    delta = choice.get("delta") or {}
                except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                    raise EndpointError(
                        ErrorCause.MALFORMED_BODY,
                        f"stream chunk {chunks + 1} is malformed: {scrub(data)[:80]!r}",
                        status_code=status,
                        latency_ms=(time.perf_counter() - started) * 1000,
                    ) from None
                chunks += 1
                model = served_model(event) or model
                usage = parse_usage(event.get("usage")) or usage
                content = delta.get("content")
                if content or delta.get("tool_calls"):
                    content_chunks += 1
                if content:
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - started) * 1000
                    parts.append(str(content))
                finish_reason = choice.get("finish_reason") or finish_reason
            latency = (time.perf_counter() - started) * 1000
        if not done:
            raise EndpointError(
                ErrorCause.STREAM_INCOMPLETE,
                f"stream ended after {chunks} chunks without [DONE]",
                status_code=status,
                latency_ms=latency,
            )
        return ChatResult(
            text="".join(parts),
            status_code=status,
            latency_ms=latency,
            ttft_ms=ttft_ms,
            finish_reason=finish_reason,
            chunks=chunks,
            done_marker=done,
            raw_model=model,
            usage=usage,
            content_chunks=content_chunks,
        )

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
