"""OpenAI-style error bodies the gateway answers with itself."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

JSON_CONTENT_TYPE = {
    "header": {"key": "content-type", "value": "application/json"},
    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
}


def error_object(message: str, kind: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The `{"error": {...}}` shape OpenAI clients parse."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# A gateway's fixed replies are written again for every new shape of its routes.
@lru_cache(maxsize=1024)
def error_body(message: str, kind: str, code: str, param: str | None = None) -> str:
    return json.dumps(error_object(message, kind, code, param), separators=(",", ":"))


def invalid_request(message: str, code: str, param: str | None = None) -> str:
    return error_body(message, "invalid_request_error", code, param)
