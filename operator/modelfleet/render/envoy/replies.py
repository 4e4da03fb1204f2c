"""The error bodies of the replies Envoy makes itself (local replies): OpenAI-style JSON for
each status Envoy answers on its own, from the codec's 400 to a 5xx."""

from __future__ import annotations

from typing import Any

from modelfleet.render.envoy.errors import error_object


def _status(op: str, status: int) -> dict[str, Any]:
    return {
        "status_code_filter": {
            "comparison": {
                "op": op,
                "value": {
                    "default_value": status,
                    "runtime_key": f"modelfleet.local_reply.{op.lower()}_{status}",
                },
            }
        }
    }


def _mapper(filter_: dict[str, Any], error: dict[str, Any]) -> dict[str, Any]:
    return {"filter": filter_, "body_format_override": {"json_format": error}}


def local_reply_config(max_body_bytes: int) -> dict[str, Any]:
    """OpenAI-style JSON for every reply Envoy makes itself. The Lua check and the direct
    responses already answer JSON; a 400 is rewritten only when the HTTP codec made it (no
    request was parsed, so it has no :method)."""
    limit_mib = max_body_bytes / (1024 * 1024)
    invalid = "invalid_request_error"
    return {
        "mappers": [
            _mapper(
                _status("EQ", 401),
                error_object(
                    "missing or unknown API key: send 'Authorization: Bearer <key>' or "
                    "'x-api-key: <key>'",
                    invalid,
                    "invalid_api_key",
                ),
            ),
            _mapper(
                {
                    "and_filter": {
                        "filters": [
                            _status("EQ", 400),
                            # Only the HTTP codec answers before a request line was read.
                            {
                                "header_filter": {
                                    "header": {
                                        "name": ":method",
                                        "present_match": True,
                                        "invert_match": True,
                                    }
                                }
                            },
                        ]
                    }
                },
                error_object("malformed HTTP request: %LOCAL_REPLY_BODY%", invalid, "bad_request"),
            ),
            _mapper(
                _status("EQ", 408),
                error_object(
                    "the request did not arrive in time: send it faster or in full",
                    invalid,
                    "request_timeout",
                ),
            ),
            _mapper(
                _status("EQ", 413),
                error_object(
                    f"request body larger than {limit_mib:g} MiB "
                    "(spec.gateway.limits.maxBodyBytes)",
                    invalid,
                    "request_too_large",
                ),
            ),
            _mapper(
                _status("EQ", 426),
                error_object("use HTTP/1.1 or HTTP/2", invalid, "upgrade_required"),
            ),
            _mapper(
                _status("EQ", 429),
                error_object(
                    "rate limit reached for this API key: retry later",
                    "requests",
                    "rate_limit_exceeded",
                ),
            ),
            _mapper(
                _status("EQ", 431),
                error_object(
                    "request headers too large: send fewer or shorter headers",
                    invalid,
                    "request_headers_too_large",
                ),
            ),
            _mapper(
                _status("GE", 500),
                error_object("%LOCAL_REPLY_BODY%", "server_error", "upstream_unavailable"),
            ),
        ]
    }
