"""A scripted OpenAI-compatible chat-completions server on loopback, for testing the LLM generator.

It is a real aiohttp HTTP server running in a background thread, so the real `openai` client talks to it
over TCP. Each request pops the next scripted reply; every request body is recorded for assertions.
A reply is a string (the model's answer), or a callable taking the request body and returning one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

Reply = str | Callable[[dict[str, Any]], str]


class ScriptedChatServer:
    """Serve `POST /v1/chat/completions` from a script of replies."""

    def __init__(self, replies: list[Reply] | None = None, *, api_key: str | None = None) -> None:
        self.replies: list[Reply] = list(replies or [])
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.api_key = api_key
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedChatServer:
        self._thread = threading.Thread(target=self._run, name="scripted-chat-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("scripted chat server did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._start())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        auth = request.headers.get("Authorization")
        self.requests.append(body)
        self.auth_headers.append(auth)
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return _error("bad key", "invalid_request_error", 401)
        if not self.replies:
            return _error("script exhausted", "server_error", 500)
        reply = self.replies.pop(0)
        content = reply(body) if callable(reply) else reply
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages", []))
        completion_tokens = max(1, len(content) // 4)
        return web.json_response(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def prompt_text(self, index: int = 0) -> str:
        """All message contents of request `index`, joined, for assertions on the prompt."""
        return "\n".join(str(m.get("content", "")) for m in self.requests[index]["messages"])

    @staticmethod
    def fenced(code: str, lang: str = "python") -> str:
        return f"Here is the monitor.\n\n```{lang}\n{code}\n```\n"


def _error(message: str, kind: str, status: int) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)
