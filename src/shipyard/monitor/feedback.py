"""Feedback bodies: the true label of earlier predictions, one object or a list of them."""

from __future__ import annotations

from typing import Any

import orjson

from shipyard.errors import InvalidInput

MAX_ITEMS = 10_000


def decode_feedback(body: bytes) -> list[tuple[str, str]]:
    """`{"id": "...", "label": "7"}` or a list of those -> [(id, label)], or a 400 naming the problem."""
    try:
        doc: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"feedback is not JSON: {exc}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise InvalidInput("feedback is an empty list")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"feedback has {len(items)} items; send at most {MAX_ITEMS} at once")
    out = []
    for i, item in enumerate(items):
        where = f"feedback item {i}" if isinstance(doc, list) else "feedback"
        if not isinstance(item, dict) or set(item) - {"id", "label"} or not {"id", "label"} <= set(item):
            raise InvalidInput(f'{where} must be {{"id": "<prediction id>", "label": "<true class>"}}')
        request_id, label = item["id"], item["label"]
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput(f"{where}: id must be a non-empty string")
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise InvalidInput(f"{where}: label must be a string (or an integer class index)")
        out.append((request_id, str(label)))
    return out
