"""Talking to a running server from the CLI: its `{"error": ...}` answers become the same errors here."""

from __future__ import annotations

import os
from typing import Any

SERVER_ENV = "SHIPYARD_SERVER"
"""The server `--server` names when not given."""
TOKEN_ENVS = ("SHIPYARD_TOKEN", "SHIPYARD_ADMIN_TOKEN")
"""Where a call finds its token when none is given, in this order: SHIPYARD_TOKEN for the CLI alone
(a scoped token, say), SHIPYARD_ADMIN_TOKEN when it is the server's own."""


def call(
    method: str, server: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    import httpx

    from shipyard.errors import Unavailable, error_for_status

    token = token or next((os.environ[v] for v in TOKEN_ENVS if os.environ.get(v)), None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # a deploy loads and warms up the version before it answers: allow for a large one
        response = httpx.request(method, server.rstrip("/") + path, json=body, headers=headers, timeout=600)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the server at {server}: {exc}") from None
    try:
        doc = response.json()
    except ValueError:
        doc = {"error": response.text[:200]}
    if response.status_code >= 400:
        message = doc.get("error", doc) if isinstance(doc, dict) else doc
        raise error_for_status(response.status_code, str(message))
    return doc
