"""The Anthropic Messages API.

`base_url` is the API root as in Anthropic's SDKs (`https://api.anthropic.com`); requests go
to `{base_url}/v1/messages` and `{base_url}/v1/models`. A base_url that already ends in
`/v1` is accepted too (then `/messages`, `/models`), so a URL copied from an
OpenAI-compatible habit still works.

Mapping to the provider protocol:
- `system` messages become the top-level `system` string;
- OpenAI-style tools (`{"type": "function", "function": {...}}`) become Anthropic tools
  (`name`, `description`, `input_schema`); `tool_use` blocks come back as OpenAI-style
  `tool_calls` (`{"id", "type": "function", "function": {"name", "arguments": <JSON>}}`);
- a `json_schema` response_format is carried the way Anthropic documents for JSON output: a
  single tool whose `input_schema` is the schema, forced with `tool_choice`; the tool input,
  serialised, is the reply text;
- streaming reads `message_start` … `content_block_delta` … `message_stop`; `message_stop`
  plays the role of OpenAI's `[DONE]` (`ChatResult.done_marker`); an `error` event is a
  server error.
"""

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
    scrub,
    served_model,
)
from app.certification.providers.http import HttpClient, StreamReply, with_retries

ANTHROPIC_VERSION = "2023-06-01"
MAX_TOKENS_CAP = 4096
SCHEMA_TOOL = "structured_output"


def anthropic_headers(api_key: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "modelcert/0.1",
        "anthropic-version": ANTHROPIC_VERSION,
    }
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def _tools(request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if request.response_format and request.response_format.get("type") == "json_schema":
        spec = request.response_format.get("json_schema") or {}
        tool = {
            "name": SCHEMA_TOOL,
            "description": "Return the answer as structured data.",
            "input_schema": spec.get("schema") or {"type": "object"},
        }
        return [tool], {"type": "tool", "name": SCHEMA_TOOL}
    tools = []
    for tool in request.tools or []:
        function = tool.get("function", tool)
        tools.append(
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object"},
            }
        )
    return tools, None


# Anthropic's stop reasons under OpenAI's finish_reason names, so evidence reads alike.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def _usage(value: Any) -> dict[str, int]:
    return parse_usage(value, "input_tokens", "output_tokens") or {}


def finish_reason(stop_reason: Any) -> str | None:
    if not isinstance(stop_reason, str):
        return None
    return STOP_REASONS.get(stop_reason, stop_reason)


class Anthropic:
    name = "anthropic"

    def __init__(self, client: HttpClient, base_url: str, model: str) -> None:
        self.client = client
        root = base_url.rstrip("/")
        self.api = root if root.endswith("/v1") else root + "/v1"
        self.model = model

    async def list_models(self) -> ModelList:
        data, status, latency = await self.client.request_json("GET", f"{self.api}/models")
        return model_list(data, status, latency)

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        system = [str(m.get("content", "")) for m in request.messages if m.get("role") == "system"]
        payload: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max(1, min(request.max_tokens, MAX_TOKENS_CAP)),
            "temperature": request.temperature,
            "messages": [m for m in request.messages if m.get("role") != "system"],
        }
        if system:
            payload["system"] = "\n\n".join(system)
        tools, choice = _tools(request)
        if tools:
            payload["tools"] = tools
        if choice:
            payload["tool_choice"] = choice
        return payload

    async def chat(self, request: ChatRequest) -> ChatResult:
        if request.stream:
            return await with_retries(
                self.client.policy, lambda: self._chat_stream(request), self.client.on_retry
            )
        data, status, latency = await self.client.request_json(
            "POST", f"{self.api}/messages", self._payload(request)
        )
        try:
            blocks = data["content"]
            texts = [str(b["text"]) for b in blocks if b.get("type") == "text"]
            uses = [b for b in blocks if b.get("type") == "tool_use"]
            tool_calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b["name"], "arguments": json.dumps(b["input"])},
                }
                for b in uses
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise EndpointError(
                ErrorCause.MALFORMED_BODY,
                f"message lacks content[] ({exc!s})",
                status_code=status,
                latency_ms=latency,
            ) from None
        text = "".join(texts)
        if request.response_format and not request.tools:
            forced = [c for c in tool_calls if c["function"]["name"] == SCHEMA_TOOL]
            text = forced[0]["function"]["arguments"] if forced else text
            tool_calls = []
        return ChatResult(
            text=text,
            status_code=status,
            latency_ms=latency,
            finish_reason=finish_reason(data.get("stop_reason")),
            tool_calls=tool_calls,
            raw_model=served_model(data),
            usage=parse_usage(data.get("usage"), "input_tokens", "output_tokens"),
        )

    async def _chat_stream(self, request: ChatRequest) -> ChatResult:
        payload = self._payload(request) | {"stream": True}
        async with self.client.stream_sse(f"{self.api}/messages", payload) as (
            events,
            status,
            started,
        ):
            reply = StreamReply(status, started)
            async for data in events:
                try:
                    event = json.loads(data)
                    kind = event["type"]
                except (ValueError, KeyError, TypeError):
                    raise reply.malformed(data, "event") from None
                if kind == "error":
                    raise EndpointError(
                        ErrorCause.SERVER_ERROR,
                        f"stream error event: {scrub(data)[:200]}",
                        status_code=status,
                        latency_ms=reply.elapsed_ms(),
                    )
                delta = event.get("delta") or {}
                if kind == "content_block_delta":
                    text = delta.get("text")
                    reply.add(str(text) if text else None, bool(delta.get("partial_json")))
                    continue
                reply.add(None)
                if kind == "message_start":
                    message = event.get("message") or {}
                    reply.model = served_model(message)
                    reply.usage |= _usage(message.get("usage"))
                elif kind == "message_delta":
                    reply.finish_reason = finish_reason(delta.get("stop_reason")) or (
                        reply.finish_reason
                    )
                    reply.usage |= _usage(event.get("usage"))
                elif kind == "message_stop":
                    reply.done = True
                    break
        return reply.result("message_stop")

    async def embed(self, texts: list[str], model: str | None = None) -> EmbeddingResult:
        raise EndpointError(
            ErrorCause.INVALID_TARGET, "the Anthropic Messages API offers no embeddings endpoint"
        )
