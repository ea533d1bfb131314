"""A synchronous client for an ASGI app in-process: httpx's ASGITransport on a private event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class ASGIClient:
    def __init__(self, app: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the client's loop (e.g. the app's start-up, which ASGITransport skips)."""
        return self._runner.run(coro)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()
