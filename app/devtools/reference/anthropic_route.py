"""The Anthropic Messages API (`POST /v1/messages`) on the reference server, same brain."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from app.devtools.reference import brain

if TYPE_CHECKING:
    from app.devtools.reference.server import ReferenceServer


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def anthropic_tools(tools: Any, tool_choice: Any) -> list[brain.Tool] | None:
    if not isinstance(tools, list):
        return None
    found = [
        brain.Tool(str(t["name"]), t.get("input_schema") or {})
        for t in tools
        if isinstance(t, dict) and t.get("name")
    ]
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "tool":
        found = [t for t in found if t.name == tool_choice.get("name")] or found
    return found or None


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status
    )


class AnthropicRoute:
    def __init__(self, server: ReferenceServer) -> None:
        self.server = server

    async def messages(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.server.behaviour(request)
        try:
            body = await request.json()
            messages = body["messages"]
            max_tokens = body["max_tokens"]
            if not isinstance(messages, list) or not isinstance(max_tokens, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "messages and max_tokens are required")
        await self.server.gate(request, behaviour)
        reply = brain.respond(
            messages,
            behaviour.persona_for(messages),
            tools=anthropic_tools(body.get("tools"), body.get("tool_choice")),
            max_tokens=max_tokens,
        )
        await self.server.generate(behaviour)
        if body.get("stream"):
            return await self.stream(request, behaviour.mode == "broken", reply.text)
        if behaviour.mode == "broken":
            return web.Response(
                text='{"type": "message", "content": [', content_type="application/json"
            )
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for name, args in reply.tool_calls:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:12]}",
                    "name": name,
                    "input": args,
                }
            )
        return web.json_response(
            {
                "id": f"msg_{uuid.uuid4().hex[:12]}",
                "type": "message",
                "role": "assistant",
                "model": self.server.model,
                "content": content,
                "stop_reason": STOP_REASONS.get(reply.finish_reason, "end_turn"),
                "usage": {"input_tokens": 10, "output_tokens": len(reply.text.split())},
            }
        )

    async def stream(self, request: web.Request, broken: bool, text: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_s",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": self.server.model,
                    "usage": {"input_tokens": 10, "output_tokens": 0},
                },
            },
        )
        await send(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else " " + word
            await send(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
            if broken:
                await response.write(b'event: content_block_delta\ndata: {"type": \n\n')
                return response  # cut: no message_stop
        await send("content_block_stop", {"type": "content_block_stop", "index": 0})
        await send(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": len(text.split())},
            },
        )
        await send("message_stop", {"type": "message_stop"})
        await response.write_eof()
        return response
