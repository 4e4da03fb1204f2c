"""The gateway's Lua script on many bodies, in LuaJIT (the Lua inside Envoy) without Envoy:
its JSON reading agrees with Python's, what it refuses and why, the stream usage it asks
for, and the usage it reads from answers cut into any chunks. The tests beside this one
drive the same script through the real Envoy."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.api.routingpolicy import Classification, GatewayLimits
from modelfleet.render.envoy.lua import script_body

from .lua_harness import LuaGateway

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
USER = {"role": "user", "content": "Say hello."}


@pytest.fixture(scope="module")
def lua() -> LuaGateway:
    return LuaGateway({"app": "acme"})


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


# -- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "code", "param"),
    [
        (CHAT, body(messages=[]), "empty_input", "messages"),
        (CHAT, body(messages=None), "empty_input", "messages"),
        (CHAT, body(messages=[""]), "invalid_type", "messages"),
        (CHAT, body(messages=[{}]), "empty_input", "messages"),
        (CHAT, body(messages=[{"role": "user", "content": ""}]), "empty_input", "messages"),
        (CHAT, body(messages=[{"role": "user", "content": " \n\t "}]), "empty_input", "messages"),
        # Whitespace written as JSON escapes and as UTF-8 (no-break and ideographic spaces).
        (
            CHAT,
            b'{"messages":[{"role":"user","content":"\\u00a0\\u3000\\n"}]}',
            "empty_input",
            "messages",
        ),
        (
            CHAT,
            '{"messages":[{"content":"\u00a0\u3000\u2009"}]}'.encode(),
            "empty_input",
            "messages",
        ),
        (
            CHAT,
            body(messages=[{"role": "system", "content": "  "}, {"role": "user", "content": None}]),
            "empty_input",
            "messages",
        ),
        (
            CHAT,
            body(messages=[{"role": "user", "content": [{"type": "text", "text": "  "}]}]),
            "empty_input",
            "messages",
        ),
        (CHAT, body(messages=[{"role": "user", "content": 5}]), "invalid_type", "messages"),
        (CHAT, body(messages="hello"), "invalid_type", "messages"),
        (CHAT, body(model="m"), "missing_required_parameter", "messages"),
        (CHAT, body(model=5, messages=[USER]), "invalid_type", "model"),
        (CHAT, body(task_type=["chat"], messages=[USER]), "invalid_type", "task_type"),
        # The gateway and the model server must read the same value: no key twice.
        (CHAT, b'{"messages":[{"content":"hi"}],"messages":[]}', "duplicate_key", "messages"),
        (
            CHAT,
            b'{"model":"a","messages":[{"content":"hi"}],"model":"b"}',
            "duplicate_key",
            "model",
        ),
        (
            CHAT,
            b'{"mod\\u0065l":"a","model":"b","messages":[{"content":"x"}]}',
            "duplicate_key",
            "model",
        ),
        (
            CHAT,
            b'{"messages":[{"role":"user","content":"hi","content":""}]}',
            "duplicate_key",
            "messages[0].content",
        ),
        (
            CHAT,
            b'{"messages":[{"content":"x"}],"stream":true,'
            b'"stream_options":{"include_usage":false,"include_usage":true}}',
            "duplicate_key",
            "stream_options.include_usage",
        ),
        (COMPLETIONS, body(prompt="   "), "empty_input", "prompt"),
        (COMPLETIONS, body(prompt=[""]), "empty_input", "prompt"),
        (COMPLETIONS, body(prompt=[[]]), "empty_input", "prompt"),
        (COMPLETIONS, body(prompt={"text": "x"}), "invalid_type", "prompt"),
        (COMPLETIONS, body(prompt=[True]), "invalid_type", "prompt"),
        (EMBEDDINGS, body(input=" "), "empty_input", "input"),
        (EMBEDDINGS, body(model="m"), "missing_required_parameter", "input"),
        (CHAT, b'{"messages": [}', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}]} x', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}], "n": 01}', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}], "t": tru}', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}], "a": [1 2]}', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}], "a": {"b" 1}}', "invalid_json", None),
        (CHAT, b'{"messages": [{"content": "x"}], "a": "unterminated}', "invalid_json", None),
        (
            CHAT,
            b'{"messages": [{"content": "x"}], "a": ' + b"[" * 100 + b"]" * 100 + b"}",
            "invalid_json",
            None,
        ),
        (CHAT, b"model=mid&messages=hi", "invalid_json", None),
        (CHAT, b'["messages"]', "invalid_json", None),
        (CHAT, b"", "missing_body", None),
        (CHAT, b"   ", "missing_body", None),
    ],
)
def test_refusals_name_the_problem(lua, path, raw, code, param):
    error = lua.request(raw, path).error()
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["message"]


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        (CHAT, body(messages=[{"role": "system", "content": " "}, USER])),
        (
            CHAT,
            body(
                messages=[
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            ),
        ),
        (
            CHAT,
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": " "}, {"type": "text", "text": "a"}],
                    }
                ]
            ),
        ),
        (CHAT, b'{"messages":[{"content":"\\u0041"}]}'),
        (CHAT, '{"messages":[{"content":"\u00e9"}]}'.encode()),
        (
            CHAT,
            b'{"note": "\\\\", "messages": [{"content": "{[\\"]}"}], "x": [[], {}, -1.5e+3, true, null]}',
        ),
        (COMPLETIONS, body(prompt=[1, 2, 3])),
        (COMPLETIONS, body(prompt=[[1, 2], [3]])),
        (COMPLETIONS, body(prompt=["", "a"])),
        (EMBEDDINGS, body(input=["a", "b"])),
    ],
)
def test_input_with_some_content_passes(lua, path, raw):
    outcome = lua.request(raw, path)
    assert outcome.status is None, outcome.body


def test_routing_fields_are_read_as_the_model_server_reads_them(lua):
    outcome = lua.request(
        b'{"model":"mi\\u0064","task_type":"c\\"x","messages":[{"content":"hi"}]}',
        headers={"x-client-id": "app"},
    )
    assert outcome.metadata["modelfleet.request"] == {
        "model": "mid",
        "task_type": 'c"x',
    }
    assert outcome.headers["x-tenant"] == "acme"
    assert outcome.route_cleared
    # null is no model at all (the model server then uses its default).
    assert "model" not in lua.request(body(model=None, messages=[USER])).metadata.get(
        "modelfleet.request", {}
    )


@pytest.mark.parametrize("escaped", [False, True], ids=["plain keys", "escaped keys"])
@pytest.mark.parametrize("where", ["top", "message", "content part"])
def test_a_body_of_many_keys_is_read_in_linear_time(where, escaped):
    """A hostile body: many short keys and no backslash. Each key once searched the body from
    itself to its end for an escape (a worker held for 10 s by one 3.5 MB request). Keys with
    an escape each take the slower decoding, which must stay linear too."""
    lua = LuaGateway(count_scans=True)
    key = "k\\u0041%d" if escaped else "k%d"
    for keys in (1_000, 8_000):
        members = ",".join(f'"{key % index}":0' for index in range(keys))
        raw = {
            "top": '{"messages":[{"role":"user","content":"hi"}],%s}',
            "message": '{"messages":[{"role":"user","content":"hi",%s}]}',
            "content part": '{"messages":[{"role":"user","content":[{"type":"text","text":"hi",%s}]}]}',
        }[where] % members
        outcome = lua.request(raw.encode())
        assert outcome.status is None, outcome.body
        assert lua.scanned <= 4 * len(raw), (keys, lua.scanned, len(raw))


def test_a_refused_request_still_says_which_model_it_asked_for(lua):
    outcome = lua.request(body(model="mid", messages=[]))
    assert outcome.status == "400"
    assert outcome.metadata["modelfleet.request"]["model"] == "mid"


# -- JSON reading agrees with Python's --------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    extra=st.dictionaries(
        st.text(max_size=8).filter(
            lambda k: k not in ("messages", "model", "task_type", "stream", "stream_options")
        ),
        JSON_VALUES,
        max_size=4,
    ),
    model=st.text(min_size=1, max_size=12),
    content=st.text(min_size=1, max_size=30),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_any_json_object_is_read_like_python_does(lua, extra, model, content, ascii_only, indent):
    document = {**extra, "model": model, "messages": [{"role": "user", "content": content}]}
    raw = json.dumps(document, ensure_ascii=ascii_only, indent=indent).encode()
    outcome = lua.request(raw)
    if content.strip():
        assert outcome.status is None, outcome.body
        assert outcome.metadata["modelfleet.request"]["model"] == model
        assert json.loads(outcome.body) == document
    else:
        assert outcome.error()["code"] == "empty_input"


@settings(max_examples=400, deadline=None)
@given(
    document=st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=5),
    cut=st.integers(min_value=0, max_value=10_000),
    junk=st.sampled_from(["", "}", "]", ",", ":", '"', "x", "1", "{", "[", " ", "\\"]),
)
def test_broken_json_is_never_taken_for_valid(lua, document, cut, junk):
    document = {**document, "messages": [USER]}
    raw = json.dumps(document)
    cut = cut % (len(raw) + 1)
    mutated = raw[:cut] + junk + raw[cut:]
    try:
        parsed = json.loads(mutated)
        python_valid = isinstance(parsed, dict)
    except ValueError:
        python_valid = False
    outcome = lua.request(mutated.encode())
    if not python_valid and "\\" not in mutated[max(cut - 1, 0) : cut + 2]:
        # Refused (the reason may be a wrong type seen before the break). The script does not
        # check escapes inside strings: the model server does.
        assert outcome.status == "400", mutated
    if python_valid and not has_duplicate_keys(mutated):
        assert outcome.status is None or outcome.error()["code"] != "invalid_json", mutated


def has_duplicate_keys(raw: str) -> bool:
    found = False

    def check(pairs: list) -> dict:
        nonlocal found
        keys = [key for key, _ in pairs]
        found = found or len(set(keys)) != len(keys)
        return dict(pairs)

    json.loads(raw, object_pairs_hook=check)
    return found


# -- stream usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "usage", "forwarded"),
    [
        ({"stream": True}, "injected", {"stream": True, "stream_options": {"include_usage": True}}),
        (
            {"stream": True, "stream_options": None},
            "injected",
            {"stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            {"stream": True, "stream_options": {}},
            "injected",
            {"stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            {"stream": True, "stream_options": {"continuous_usage_stats": False}},
            "injected",
            {
                "stream": True,
                "stream_options": {"continuous_usage_stats": False, "include_usage": True},
            },
        ),
        ({"stream": True, "stream_options": {"include_usage": True}}, "asked", None),
        ({"stream": False}, None, None),
        ({}, None, None),
    ],
)
def test_streams_are_asked_for_usage(lua, sent, usage, forwarded):
    raw = json.dumps({"model": "m", "messages": [USER], **sent}).encode()
    outcome = lua.request(raw, headers={"content-length": str(len(raw))})
    assert outcome.status is None
    # Only a stream says how it gets its usage.
    assert outcome.metadata["modelfleet.request"].get("usage") == usage
    expected = {"model": "m", "messages": [USER], **(forwarded or sent)}
    assert json.loads(outcome.body) == expected
    assert outcome.headers["content-length"] == str(len(outcome.body.encode()))


def test_include_usage_false_is_overridden_and_the_model_server_reads_the_last(lua):
    raw = body(messages=[USER], stream=True, stream_options={"include_usage": False})
    forwarded = lua.request(raw).body
    assert json.loads(forwarded)["stream_options"] == {"include_usage": True}


def test_embeddings_are_not_streams(lua):
    outcome = lua.request(body(input="x", stream=True), EMBEDDINGS)
    assert json.loads(outcome.body) == {"input": "x", "stream": True}


USAGE = {
    "prompt_tokens": 12,
    "total_tokens": 19,
    "completion_tokens": 7,
    "prompt_tokens_details": {"cached_tokens": 3},
}


def events(*payloads) -> bytes:
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads
    )


# The largest answer of known length the script reads whole.
WHOLE_AT_MOST = int(re.search(r"local WHOLE_AT_MOST = (\d+)", script_body()).group(1))

STREAM = events(
    {"choices": [{"delta": {"content": "a"}}]},
    {"choices": [{"delta": {"content": '"usage" text'}}]},
    {"choices": [], "usage": USAGE},
    "[DONE]",
)
WITHOUT_USAGE = events(
    {"choices": [{"delta": {"content": "a"}}]},
    {"choices": [{"delta": {"content": '"usage" text'}}]},
    "[DONE]",
)


def splits(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 50, 10_000])
@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_an_injected_usage_event_is_read_and_removed_however_the_stream_is_cut(lua, size, line_end):
    stream = STREAM.replace(b"\n", line_end)
    sent, metadata = lua.response(splits(stream, size), "injected", "text/event-stream")
    assert b"".join(sent) == WITHOUT_USAGE.replace(b"\n", line_end)
    assert metadata == {"prompt_tokens": 12, "completion_tokens": 7}


def test_a_long_event_is_not_held_back(lua):
    long_event = events({"choices": [{"delta": {"content": "x" * 40_000}}]})
    chunks = splits(long_event + events("[DONE]"), 20_000)
    sent, _ = lua.response(chunks, "injected", "text/event-stream")
    assert sent[1] == chunks[1], "the second piece of a long event waited"
    assert b"".join(sent) == b"".join(chunks)


@pytest.mark.parametrize("size", [1, 13, 10_000])
def test_a_usage_the_client_asked_for_is_read_and_left(lua, size):
    sent, metadata = lua.response(splits(STREAM, size), "asked", "text/event-stream")
    assert b"".join(sent) == STREAM
    assert metadata == {"prompt_tokens": 12, "completion_tokens": 7}


@pytest.mark.parametrize("known_length", [False, True], ids=["chunked", "content-length"])
@pytest.mark.parametrize("size", [1, 5, 64, 100_000])
def test_usage_is_read_from_a_json_answer_in_any_chunks(lua, size, known_length):
    answer = (
        json.dumps(
            {
                "choices": [{"message": {"content": 'the "usage": {"prompt_tokens": 1} is here'}}],
                "usage": USAGE,
            }
        ).encode()
        + b" " * 5000
    )
    sent, metadata = lua.response(splits(answer, size), "answer", known_length=known_length)
    assert b"".join(sent) == answer
    assert metadata == {"prompt_tokens": 12, "completion_tokens": 7}
    # A small answer of known length is read whole (cheaper); others as they pass.
    assert lua.read_by_chunks is not known_length


@pytest.mark.parametrize("after", [0, 3000, 5000, 60_000, 70_000])
def test_a_whole_answer_is_searched_from_its_end_then_all_of_it(lua, after):
    answer = json.dumps({"choices": [], "usage": USAGE, "after": "y" * after}).encode()
    _, metadata = lua.response(splits(answer, 1000), "answer", known_length=True)
    assert metadata == {"prompt_tokens": 12, "completion_tokens": 7}
    assert lua.read_by_chunks is (len(answer) > WHOLE_AT_MOST)


def test_answers_read_whole_always_fit_the_smallest_body_limit():
    """Envoy answers 500 when a body read whole outgrows the listener's buffer, which is
    the body limit: the script reads whole only answers no larger than the smallest one."""
    smallest = next(
        m.ge for m in GatewayLimits.model_fields["max_body_bytes"].metadata if hasattr(m, "ge")
    )
    assert smallest >= WHOLE_AT_MOST


def test_embeddings_usage_has_no_completion(lua):
    answer = json.dumps(
        {"data": [{"embedding": [0.1] * 100}], "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    )
    assert lua.response([answer.encode()], "answer")[1] == {
        "prompt_tokens": 4,
        "completion_tokens": 0,
    }


def test_errors_and_answers_without_usage_count_nothing(lua):
    error = json.dumps({"error": {"message": "x"}}).encode()
    assert lua.response([error], "answer", status="503") == ([error], {})
    assert lua.response([b'{"choices": []}'], "answer")[1] == {}


# -- classification text --------------------------------------------------------------------------


def test_classification_headers_carry_a_bounded_decoded_prefix():
    rules = Classification.model_validate(
        {
            "textPrefixBytes": 64,
            "rules": [
                {"name": "code", "taskType": "code", "keywords": ["python"]},
                {"name": "legal", "taskType": "legal", "regex": "contract", "in": "systemPrompt"},
            ],
        }
    )
    lua = LuaGateway({}, rules)
    long_text = "é" * 40 + "python" * 20
    outcome = lua.request(
        body(
            messages=[
                {"role": "system", "content": "You review a\ncontract."},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "line\tone"},
                        {"type": "text", "text": long_text},
                    ],
                },
            ]
        )
    )
    headers = outcome.headers
    assert headers["x-modelfleet-system"] == "You review a contract."
    last_user = headers["x-modelfleet-last-user"]
    assert last_user.startswith("line one ")
    assert len(last_user.encode()) <= 64
    last_user.encode().decode()  # never a split UTF-8 character
    chars = int(headers["x-modelfleet-prompt-chars"])
    assert chars > len(long_text)
    assert headers["x-modelfleet-prompt-tokens"] == str(math.ceil(chars / 4))
    # A request that names a task type or a model, or sends x-task-type, is not classified.
    for raw, extra in [
        (body(model="m", messages=[USER]), {}),
        (body(task_type="chat", messages=[USER]), {}),
        (body(messages=[USER]), {"x-task-type": "chat"}),
    ]:
        assert not any(
            h.startswith("x-modelfleet") for h in lua.request(raw, headers=extra).headers
        )
    completion = lua.request(body(prompt="write python"), COMPLETIONS).headers
    assert completion["x-modelfleet-last-user"] == "write python"
