"""The Lua filter's script: a generated prelude `C` with this gateway's settings (tenants by
key id, the keys over a spent budget, the input field of each endpoint, the error bodies,
what classification rules need read from the body), then json.lua, request.lua and
response.lua (beside this file) as one chunk."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files

from modelfleet.api.routingpolicy import Classification
from modelfleet.plan.budgets import INSUFFICIENT_QUOTA, Gate
from modelfleet.render.envoy.errors import error_body, invalid_request
from modelfleet.render.envoy.names import (
    BUDGET_DEGRADED,
    BUDGET_HEADER,
    CLASSIFY_CHARS_HEADER,
    CLASSIFY_LAST_USER_HEADER,
    CLASSIFY_SYSTEM_HEADER,
    CLASSIFY_TOKENS_HEADER,
    CLIENT_ID_HEADER,
    GENERATION_PATHS,
    INPUT_FIELD_BY_PATH,
    METADATA_NAMESPACE,
    RESPONSE_NAMESPACE,
    TASK_TYPE_HEADER,
    TENANT_HEADER,
)

LuaValue = str | int | bool | Mapping[str, "LuaValue"] | None


SCRIPT_FILES = ("json.lua", "request.lua", "response.lua")


@cache
def script_body() -> str:
    here = files("modelfleet.render.envoy")
    return "\n".join(here.joinpath(name).read_text() for name in SCRIPT_FILES)


def lua_string(text: str) -> str:
    """A double-quoted Lua literal for any text (bytes outside printable ASCII escaped)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def lua_long_string(text: str) -> str:
    """A long-bracket Lua literal (no escapes to read) when `text` allows one."""
    if "\n" in text or "]==]" in text or not text.isascii():
        return lua_string(text)
    return f"[==[{text}]==]"


def lua_value(value: LuaValue, indent: str = "") -> str:
    """A Lua literal of a value: strings, integers, booleans, nil and tables by key."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # Error bodies are JSON: easier to read without escaped quotes.
        return lua_long_string(value) if '"' in value else lua_string(value)
    if not value:
        return "{}"
    inner = indent + "  "
    items = ",\n".join(
        f"{inner}[{lua_string(k)}] = {lua_value(v, inner)}" for k, v in value.items()
    )
    return "{\n" + items + ",\n" + indent + "}"


def input_errors() -> dict[str, str]:
    """Name -> OpenAI-style 400 body, one per way a request body can be refused (the script
    builds the ones that name a key or an index itself)."""
    errors = {
        "not_json": invalid_request(
            "the request body is not valid JSON: send a JSON object", "invalid_json"
        ),
        "no_body": invalid_request("the request has no body: send a JSON object", "missing_body"),
        "not_object": invalid_request("the request body must be a JSON object", "invalid_json"),
        "model_not_string": invalid_request("'model' must be a string", "invalid_type", "model"),
        "task_type_not_string": invalid_request(
            "'task_type' must be a string", "invalid_type", "task_type"
        ),
    }
    for path, field in INPUT_FIELD_BY_PATH.items():
        errors[f"missing_{field}"] = invalid_request(
            f"'{field}' is required for {path}", "missing_required_parameter", field
        )
        errors[f"empty_{field}"] = invalid_request(
            f"'{field}' has no input: {path} needs some text (or tokens) that is not whitespace",
            "empty_input",
            field,
        )
    return errors


def classify_settings(classification: Classification | None) -> LuaValue:
    """What the script must read for the rules: which texts, and how much of each."""
    if classification is None:
        return False
    places = {rule.in_ for rule in classification.rules if rule.prompt_length is None}
    return {
        "prefix": classification.text_prefix_bytes,
        "last_user": "lastUserMessage" in places,
        "system": "systemPrompt" in places,
    }


def over_budget(gates: Mapping[str, Gate]) -> dict[str, LuaValue]:
    """Key id -> what the script does with its requests: block (with OpenAI's 429 body) or
    degrade (it marks them for the routes' budget companions)."""
    out: dict[str, LuaValue] = {}
    for key_id, gate in sorted(gates.items()):
        entry: dict[str, LuaValue] = {"action": gate.action}
        if gate.action == "block":
            entry["body"] = error_body(gate.message, INSUFFICIENT_QUOTA, INSUFFICIENT_QUOTA)
        out[key_id] = entry
    return out


def settings(
    tenant_by_key_id: Mapping[str, str],
    classification: Classification | None,
    gates: Mapping[str, Gate] | None = None,
) -> dict[str, LuaValue]:
    return {
        "namespace": METADATA_NAMESPACE,
        "response_namespace": RESPONSE_NAMESPACE,
        "client_header": CLIENT_ID_HEADER,
        "tenant_header": TENANT_HEADER,
        "task_type_header": TASK_TYPE_HEADER,
        "classify_headers": {
            "last_user": CLASSIFY_LAST_USER_HEADER,
            "system": CLASSIFY_SYSTEM_HEADER,
            "chars": CLASSIFY_CHARS_HEADER,
            "tokens": CLASSIFY_TOKENS_HEADER,
        },
        "tenants": dict(sorted(tenant_by_key_id.items())),
        "budget_header": BUDGET_HEADER,
        "budget_degraded": BUDGET_DEGRADED,
        "over_budget": over_budget(gates or {}),
        "input_field": dict(INPUT_FIELD_BY_PATH),
        "streaming": dict.fromkeys(GENERATION_PATHS, True),
        "errors": input_errors(),
        "classify": classify_settings(classification),
    }


# The listener's own script. Every route runs the gateway's script, which the routes file
# gives the virtual host (`LuaPerRoute`, with the keys' tenants and the budget gates), so
# this one runs only for a request that no route's script covers: a request no route
# matches, or a routes file whose virtual host lacks the script. (Without a routes file
# Envoy refuses the listener itself.) Such a request must not pass unchecked: no budget
# or input check would have run, so it is refused; the listener's local reply
# mapper turns the text into the OpenAI-style 5xx body. The whole script there (36 KB)
# was one more copy per gateway in the listener file, never run.
UNROUTED_MESSAGE = "this gateway has no route configuration for this request: retry later"
UNROUTED_SCRIPT = (
    "-- Generated by modelfleet: runs only where the routes file gives no script.\n"
    "function envoy_on_request(handle)\n"
    f'  handle:respond({{ [":status"] = "503" }}, {lua_string(UNROUTED_MESSAGE)})\n'
    "end\n"
)


def gateway_script(
    tenant_by_key_id: Mapping[str, str],
    classification: Classification | None = None,
    gates: Mapping[str, Gate] | None = None,
) -> str:
    """The whole Lua script; `tenant_by_key_id` fills the x-tenant header, `gates` holds the
    keys over a spent budget."""
    prelude = "-- Generated by modelfleet: this gateway's settings.\nlocal C = " + lua_value(
        settings(tenant_by_key_id, classification, gates)
    )
    return prelude + "\n\n" + script_body()
