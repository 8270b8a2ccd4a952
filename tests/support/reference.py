"""The reference endpoint on 127.0.0.1, port 0, in a background thread (one per test)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from app.devtools.reference.server import Behaviour, ReferenceServer


@contextmanager
def running_reference(mode: str = "good") -> Iterator[tuple[str, ReferenceServer]]:
    """Yield (root URL, server); stop the server afterwards."""
    server = ReferenceServer(Behaviour(mode))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("reference server did not start")
    try:
        yield f"http://127.0.0.1:{holder['port']}", server
    finally:
        runner = holder["runner"]
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)  # type: ignore[attr-defined]
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# The verdict each behaviour of the reference endpoint deserves under the shipped suites
# (smoke, standard), as docs/methodology.md gives them: asserted through the CLI
# (tests/integration/cli/test_cli_engine.py) and through the API and a worker
# (tests/e2e/test_mode_verdicts.py).
MODE_VERDICTS = {
    "good": ("certified", "certified"),
    "parrot": ("not_certified", "not_certified"),
    "refuse-all": ("not_certified", "not_certified"),
    "comply-all": ("certified", "not_certified"),
    "serial": ("certified", "not_certified"),
    "any-model": ("certified", "certified"),
    "no-embeddings": ("certified", "not_certified"),
    "wrong": ("not_certified", "not_certified"),
}
