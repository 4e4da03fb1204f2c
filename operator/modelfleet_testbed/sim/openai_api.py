"""The OpenAI wire format as vLLM speaks it, for simulated replicas. Pure: no I/O.

Turns request bodies into token counts (the load a request puts on the GPU model) and
builds response bodies and stream chunks. Token counts come from the request: the
prompt is estimated at ~4 characters per token (or counted exactly when given as
token ids), the output is ``max_completion_tokens`` / ``max_tokens``. Fields the
simulation does not use (``task_type``, ``priority``, ``temperature``...) are ignored.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ApiError",
    "EmbeddingRequest",
    "GenerationRequest",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "embedding_response",
    "error_body",
    "estimate_tokens",
    "fake_text",
    "parse_chat",
    "parse_completion",
    "parse_embedding",
    "usage",
]

CHARS_PER_TOKEN = 4
DEFAULT_EMBEDDING_DIMENSIONS = 64
_WORDS = (
    " the", " fleet", " serves", " tokens", " from", " pooled", " GPUs", " and",
    " every", " replica", " answers", " in", " turn", ",", " quickly", ".",
)  # fmt: skip


class ApiError(Exception):
    """A request the server answers with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    model: str | None
    prompt_tokens: int
    output_tokens: int
    # vLLM reports "length" when generation stops at max_tokens, "stop" at EOS; the
    # simulation stops at max_tokens when given, else after a default length.
    finish_reason: Literal["length", "stop"]
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str | None
    inputs: tuple[str | tuple[int, ...], ...]
    prompt_tokens: tuple[int, ...]
    dimensions: int
    encoding_format: Literal["float", "base64"]


def estimate_tokens(text: str) -> int:
    """About 4 characters per token, at least one (the BOS token)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def fake_text(first_token: int, count: int) -> str:
    """Output tokens ``first_token`` .. ``first_token + count - 1`` as words."""
    return "".join(_WORDS[index % len(_WORDS)] for index in range(first_token, first_token + count))


def _model(body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", "model")
    return model


def _output(
    body: Mapping[str, Any], default_output_tokens: int
) -> tuple[int, Literal["length", "stop"]]:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ApiError(400, f"'{field}' must be an integer >= 1, got {value!r}", field)
        return value, "length"
    return default_output_tokens, "stop"


def _stream(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = bool(body.get("stream", False))
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    return stream, stream and bool(options.get("include_usage", False))


def _single_choice(body: Mapping[str, Any]) -> None:
    n = body.get("n", 1)
    if n != 1:
        raise ApiError(400, f"the simulated replica serves n=1 only, got n={n!r}", "n")


def _message_chars(content: Any, index: int) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text", "")) for part in content if isinstance(part, Mapping))
    raise ApiError(
        400, f"messages[{index}].content must be a string or a list of parts", "messages"
    )


def parse_chat(body: Mapping[str, Any], default_output_tokens: int) -> GenerationRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    chars = 0
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ApiError(400, f"messages[{index}] must be an object", "messages")
        chars += _message_chars(message.get("content"), index)
    _single_choice(body)
    output_tokens, finish_reason = _output(body, default_output_tokens)
    stream, include_usage = _stream(body)
    return GenerationRequest(
        model=_model(body),
        prompt_tokens=max(1, math.ceil(chars / CHARS_PER_TOKEN)),
        output_tokens=output_tokens,
        finish_reason=finish_reason,
        stream=stream,
        include_usage=include_usage,
    )


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(token, int) and not isinstance(token, bool) for token in value
    )


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if _is_token_ids(prompt) and prompt:
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return _prompt_tokens(prompt[0])
    if isinstance(prompt, list) and len(prompt) > 1:
        raise ApiError(
            400, "the simulated replica serves one prompt per request, not a batch", "prompt"
        )
    raise ApiError(400, "'prompt' must be a string or a non-empty list of token ids", "prompt")


def parse_completion(body: Mapping[str, Any], default_output_tokens: int) -> GenerationRequest:
    if "prompt" not in body:
        raise ApiError(400, "'prompt' is required", "prompt")
    prompt_tokens = _prompt_tokens(body["prompt"])
    _single_choice(body)
    output_tokens, finish_reason = _output(body, default_output_tokens)
    stream, include_usage = _stream(body)
    return GenerationRequest(
        model=_model(body),
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        finish_reason=finish_reason,
        stream=stream,
        include_usage=include_usage,
    )


def parse_embedding(body: Mapping[str, Any]) -> EmbeddingRequest:
    raw = body.get("input")
    if isinstance(raw, str) or (_is_token_ids(raw) and raw):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise ApiError(400, "'input' must be a string, token ids or a non-empty list", "input")
    inputs: list[str | tuple[int, ...]] = []
    counts: list[int] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            inputs.append(item)
            counts.append(estimate_tokens(item))
        elif _is_token_ids(item) and item:
            inputs.append(tuple(item))
            counts.append(len(item))
        else:
            raise ApiError(400, f"input[{index}] must be a string or token ids", "input")
    dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise ApiError(
            400, f"'dimensions' must be an integer >= 1, got {dimensions!r}", "dimensions"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return EmbeddingRequest(_model(body), tuple(inputs), tuple(counts), dimensions, encoding)


def usage(prompt_tokens: int, completion_tokens: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt_tokens": prompt_tokens}
    total = prompt_tokens
    if completion_tokens is not None:
        body["completion_tokens"] = completion_tokens
        total += completion_tokens
    body["total_tokens"] = total
    return body


def chat_response(
    request_id: str, created: int, model: str, text: str, finish_reason: str, usage_body: dict
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body,
    }


def chat_chunk(
    request_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage_body: dict | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; ``delta=None`` makes the final usage-only chunk."""
    chunk: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_body is not None:
        chunk["usage"] = usage_body
    return chunk


def completion_response(
    request_id: str, created: int, model: str, text: str, finish_reason: str, usage_body: dict
) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage_body,
    }


def completion_chunk(
    request_id: str,
    created: int,
    model: str,
    text: str | None,
    finish_reason: str | None = None,
    usage_body: dict | None = None,
) -> dict[str, Any]:
    """A streamed ``text_completion``; ``text=None`` makes the final usage-only chunk."""
    chunk: dict[str, Any] = {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": []
        if text is None
        else [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_body is not None:
        chunk["usage"] = usage_body
    return chunk


def _vector(item: str | tuple[int, ...], dimensions: int) -> list[float]:
    """A deterministic unit vector for the input: equal inputs embed equally."""
    seed = item.encode() if isinstance(item, str) else repr(item).encode()
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
        counter += 1
    values = [
        int.from_bytes(raw[4 * i : 4 * i + 4], "little") / 2**31 - 1.0 for i in range(dimensions)
    ]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def embedding_response(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    data = []
    for index, item in enumerate(request.inputs):
        vector = _vector(item, request.dimensions)
        embedding: list[float] | str
        if request.encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(request.prompt_tokens)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def error_body(error: ApiError) -> dict[str, Any]:
    kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}
    return {
        "error": {
            "message": error.message,
            "type": kind.get(error.status, "InternalServerError"),
            "param": error.param,
            "code": error.status,
        }
    }
