"""aiohttp server speaking the OpenAI wire format, with a behaviour per URL prefix.

`/v1/...` uses the mode given at start; `/m/<mode>/v1/...` picks one per request, so one server
serves every behaviour: good, wrong, slow[-MS], flaky[-PCT], ratelimit[-RPS], broken, auth,
and the behaviours of real small models: parrot (echoes the prompt plus junk), refuse-all,
comply-all (answers harmful and benign alike), serial (one request at a time; competing
streams end after the role chunk), any-model (answers 200 for any model name; the others
answer 404 for a model they do not serve, as vLLM and OpenAI do), no-embeddings (500 on
every embeddings request), degraded[-PCT] (a model that got worse: answers PCT % of the
prompts wrong, default 40, the same prompts every time, the rest right); and a judge model
for `judge` graders: judge (grades a judge prompt from its content, brain.judge_verdict) and
judge-lenient (passes every answer: a judge that fails its calibration). docs/methodology.md
gives the verdict each deserves.

A chat takes `generation_ms` (default 15 ms) before it answers, as a model generating takes
time: concurrency then pays, as it does on a real server, and a serial one shows.
`GET /_stats` reports request counts and the peak number of concurrent requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from app.devtools.reference import MODES, brain
from app.devtools.reference.anthropic_route import AnthropicRoute

PERSONAS = {
    "wrong": "wrong",
    "parrot": "parrot",
    "refuse-all": "refuse",
    "comply-all": "comply",
    "judge": "judge",
    "judge-lenient": "judge-lenient",
}  # every other mode answers as `good`
MODE_SPEC = re.compile(r"(?P<name>[a-z]+(?:-[a-z]+)*)(?:-(?P<arg>\d+(?:\.\d+)?))?")
EMBED_MODEL = "reference-embed"
EMBED_DIM = 64
NO_EMBEDDINGS = {
    "error": {"message": "embeddings are not supported by this server", "type": "server_error"}
}


@dataclass
class Behaviour:
    mode: str
    latency_ms: float = 2500.0
    flaky_rate: float = 0.5
    rps: float = 5.0
    generation_ms: float = 15.0
    degraded_rate: float = 0.4

    @property
    def persona(self) -> str:
        return PERSONAS.get(self.mode, "good")

    def persona_for(self, messages: list[Any]) -> str:
        """Mode degraded answers a fixed share of the prompts wrong, chosen by the prompt's
        hash: the same prompts every run, so its pass rate is what the share says."""
        if self.mode != "degraded":
            return self.persona
        text = brain.last_user_text(messages).encode()
        share = int.from_bytes(hashlib.sha256(text).digest()[:4], "big") / 2**32
        return "wrong" if share < self.degraded_rate else "good"


@dataclass
class Stats:
    total: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_scope: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class Bucket:
    rate: float
    tokens: float
    updated: float


class ReferenceServer:
    def __init__(
        self, default: Behaviour, model: str = "reference-model", api_key: str = "reference-key"
    ) -> None:
        self.default = default
        self.model = model
        self.api_key = api_key
        self.stats = Stats()
        self.buckets: dict[str, Bucket] = {}
        self.random = random.Random(1234)
        self.scope_in_flight: dict[str, int] = {}
        self.serial = asyncio.Lock()  # mode serial: one request at a time
        self.anthropic = AnthropicRoute(self)

    def behaviour(self, request: web.Request) -> Behaviour:
        spec = request.match_info.get("mode")
        if not spec:
            return self.default
        match = MODE_SPEC.fullmatch(spec)
        name, arg = (match["name"], match["arg"]) if match else (spec, None)
        if name not in MODES:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {"message": f"unknown mode {name}"}}),
                content_type="application/json",
            )
        behaviour = Behaviour(
            name,
            self.default.latency_ms,
            self.default.flaky_rate,
            self.default.rps,
            self.default.generation_ms,
        )
        if arg:
            value = float(arg)
            if name == "slow":
                behaviour.latency_ms = value
            elif name == "flaky":
                behaviour.flaky_rate = value / 100
            elif name == "ratelimit":
                behaviour.rps = value
            elif name == "degraded":
                behaviour.degraded_rate = min(value, 100.0) / 100
        return behaviour

    @web.middleware
    async def count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_"):
            return await handler(request)
        scope = request.match_info.get("mode") or request.headers.get("X-Scope") or "default"
        self.stats.total += 1
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        per = self.stats.by_scope.setdefault(scope, {"total": 0, "peak_in_flight": 0})
        self.scope_in_flight[scope] = self.scope_in_flight.get(scope, 0) + 1
        per["total"] += 1
        per["peak_in_flight"] = max(per["peak_in_flight"], self.scope_in_flight[scope])
        status = "error"
        try:
            response = await handler(request)
            status = str(response.status)
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            self.stats.in_flight -= 1
            self.scope_in_flight[scope] -= 1
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1

    async def gate(self, request: web.Request, behaviour: Behaviour) -> None:
        """Apply the mode's failure behaviour before answering."""
        if behaviour.mode == "auth":
            if (
                request.headers.get("Authorization") != f"Bearer {self.api_key}"
                and request.headers.get("x-api-key") != self.api_key
            ):
                raise web.HTTPUnauthorized(
                    text=json.dumps({"error": {"message": "invalid api key"}}),
                    content_type="application/json",
                )
        if behaviour.mode == "slow":
            await asyncio.sleep(behaviour.latency_ms / 1000)
        if behaviour.mode == "flaky" and self.random.random() < behaviour.flaky_rate:
            raise web.HTTPInternalServerError(
                text=json.dumps({"error": {"message": "flaky upstream"}}),
                content_type="application/json",
            )
        if behaviour.mode == "ratelimit":
            key = request.match_info.get("mode") or "default"
            now = time.monotonic()
            bucket = self.buckets.setdefault(key, Bucket(behaviour.rps, behaviour.rps, now))
            bucket.tokens = min(bucket.rate, bucket.tokens + (now - bucket.updated) * bucket.rate)
            bucket.updated = now
            if bucket.tokens < 1:
                wait = (1 - bucket.tokens) / bucket.rate
                raise web.HTTPTooManyRequests(
                    headers={"Retry-After": f"{max(1, round(wait + 0.5))}"},
                    text=json.dumps({"error": {"message": "rate limited"}}),
                    content_type="application/json",
                )
            bucket.tokens -= 1

    async def models(self, request: web.Request) -> web.Response:
        behaviour = self.behaviour(request)
        await self.gate(request, behaviour)
        if behaviour.mode == "broken":
            return web.Response(
                text='{"object": "list", "data": [', content_type="application/json"
            )
        data = [
            {"id": m, "object": "model", "owned_by": "modelcert"} for m in (self.model, EMBED_MODEL)
        ]
        return web.json_response({"object": "list", "data": data})

    def unknown_model(
        self, behaviour: Behaviour, model: Any, served: tuple[str, ...]
    ) -> web.Response | None:
        """404 for a model this server does not serve (vLLM's and OpenAI's answer); mode
        any-model answers for any name, as llama.cpp and some proxies do."""
        if behaviour.mode == "any-model" or model is None or model in served:
            return None
        return web.json_response(
            {
                "error": {
                    "message": f"The model `{str(model)[:100]}` does not exist.",
                    "type": "invalid_request_error",
                    "code": "model_not_found",
                }
            },
            status=404,
        )

    def lock_for(self, behaviour: Behaviour) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.serial if behaviour.mode == "serial" else contextlib.nullcontext()

    async def generate(self, behaviour: Behaviour) -> None:
        """The time a model takes to answer (mode slow has its own)."""
        if behaviour.mode != "slow" and behaviour.generation_ms > 0:
            await asyncio.sleep(behaviour.generation_ms / 1000)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        behaviour = self.behaviour(request)
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError
            max_tokens = int(body.get("max_tokens") or 64)
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": {"message": "invalid request body"}}, status=400)
        await self.gate(request, behaviour)
        missing = self.unknown_model(behaviour, body.get("model"), (self.model,))
        if missing is not None:
            return missing
        reply = brain.respond(
            messages,
            behaviour.persona_for(messages),
            tools=openai_tools(body.get("tools")),
            json_schema=openai_schema(body.get("response_format")),
            max_tokens=max_tokens,
        )
        if body.get("stream"):
            if behaviour.mode == "serial" and self.serial.locked():
                return await self.emptied_stream(request)
            async with self.lock_for(behaviour):
                await self.generate(behaviour)
                return await self.stream(request, behaviour, reply)
        async with self.lock_for(behaviour):
            await self.generate(behaviour)
        return self.completion(behaviour, reply)

    def completion(self, behaviour: Behaviour, reply: brain.Reply) -> web.Response:
        text = reply.text
        if behaviour.mode == "broken":
            return web.Response(
                text='{"id": "chatcmpl-x", "choices": [{"message": ',
                content_type="application/json",
            )
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in reply.tool_calls
            ]
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": len(text.split()),
                    "total_tokens": 10 + len(text.split()),
                },
            }
        )

    async def emptied_stream(self, request: web.Request) -> web.StreamResponse:
        """What a serial server does to a competing stream: the role chunk, then [DONE]."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        role = {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
        }
        await response.write(f"data: {json.dumps(role)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def stream(
        self, request: web.Request, behaviour: Behaviour, reply: brain.Reply
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        text = reply.text
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            chunk = {
                "id": "chatcmpl-s",
                "object": "chat.completion.chunk",
                "model": self.model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if behaviour.mode == "broken" and i == 0:
                await response.write(b'data: {"choices": [{"delta": \n\n')
                return response  # cut: no [DONE]
        final = {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": len(text.split()),
                "total_tokens": 10 + len(text.split()),
            },
        }
        await response.write(f"data: {json.dumps(final)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        behaviour = self.behaviour(request)
        try:
            body = await request.json()
            inputs = body["input"]
            inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": {"message": "invalid request body"}}, status=400)
        await self.gate(request, behaviour)
        if behaviour.mode == "no-embeddings":
            return web.json_response(NO_EMBEDDINGS, status=500)
        missing = self.unknown_model(behaviour, body.get("model"), (self.model, EMBED_MODEL))
        if missing is not None:
            return missing
        if behaviour.mode == "broken":
            return web.Response(
                text='{"data": [{"embedding": [0.1,', content_type="application/json"
            )
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": embed(str(t), wrong=behaviour.mode == "wrong"),
            }
            for i, t in enumerate(inputs)
        ]
        return web.json_response({"object": "list", "data": data, "model": EMBED_MODEL})

    async def get_stats(self, request: web.Request) -> web.Response:
        s = self.stats
        return web.json_response(
            {
                "total": s.total,
                "in_flight": s.in_flight,
                "peak_in_flight": s.peak_in_flight,
                "by_status": s.by_status,
                "by_scope": s.by_scope,
            }
        )

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        self.scope_in_flight = {}
        self.buckets = {}
        return web.json_response({"reset": True})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "mode": self.default.mode})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.count], client_max_size=8 * 1024 * 1024)
        for prefix in ("", "/m/{mode}"):
            app.router.add_get(prefix + "/v1/models", self.models)
            app.router.add_post(prefix + "/v1/chat/completions", self.chat)
            app.router.add_post(prefix + "/v1/embeddings", self.embeddings)
            app.router.add_post(prefix + "/v1/messages", self.anthropic.messages)
        app.router.add_get("/_stats", self.get_stats)
        app.router.add_post("/_stats/reset", self.reset_stats)
        app.router.add_get("/_health", self.health)
        return app


def openai_tools(tools: Any) -> list[brain.Tool] | None:
    if not isinstance(tools, list):
        return None
    found = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            found.append(brain.Tool(str(function["name"]), function.get("parameters") or {}))
    return found or None


def openai_schema(response_format: Any) -> dict[str, Any] | None:
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def embed(text: str, wrong: bool = False) -> list[float]:
    """A bag-of-words hashing embedding: texts sharing words are closer, as a real one would be."""
    import hashlib
    import math

    vector = [0.0] * EMBED_DIM
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    for word in words:
        if not word:
            continue
        h = hashlib.sha256(word.encode()).digest()
        if wrong:
            h = hashlib.sha256(uuid.uuid4().bytes).digest()
        vector[h[0] % EMBED_DIM] += 1.0 if h[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


def serve(
    host: str,
    port: int,
    behaviour: Behaviour,
    model: str = "reference-model",
    api_key: str = "reference-key",
) -> None:
    server = ReferenceServer(behaviour, model=model, api_key=api_key)
    web.run_app(
        server.app(), host=host, port=port, print=None, access_log=None, handle_signals=True
    )
