"""API keys of the gateway's clients: `keys: [{id, key, tenant}]` from a file or a Secret."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.api.load import InputError, InvalidInput
from modelfleet.api.names import API_KEYS_FIELD
from modelfleet.api.yaml_input import load_one, read_bounded

# Key ids and tenants become header values, Lua table keys and parts of stat names
# (`<tenant>_<id>`), so they are kept to characters that are safe in all three and leave
# `_` free as the separator.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
KEY_PATTERN = re.compile(r"^[\x21-\x7e]+$")
KEY_RULE = (
    "must be a non-empty string of visible ASCII characters (no spaces): it travels in an "
    "HTTP header"
)
NAME_RULE = "use 1-63 letters, digits and '-', starting and ending with a letter or digit"


@dataclass(frozen=True)
class ApiKey:
    id: str  # what the backend and the logs see (x-client-id)
    key: str  # the secret the client sends; never logged
    tenant: str  # who is billed (x-tenant)

    def __repr__(self) -> str:
        return f"ApiKey(id={self.id!r}, tenant={self.tenant!r}, key=<hidden>)"


def parse_api_keys(data: Any, source: str) -> list[ApiKey]:
    """`{keys: [{id, key, tenant}]}` -> ApiKeys, or InvalidInput naming each bad field."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        message = "expected a mapping with a list `keys: [{id, key, tenant}]`"
        raise InvalidInput([InputError(source, "api keys", "keys", message)])
    errors: list[InputError] = []
    keys: list[ApiKey] = []
    ids: dict[str, int] = {}
    secrets: dict[str, int] = {}

    def error(path: str, message: str) -> None:
        errors.append(InputError(source, "api keys", path, message))

    for index, entry in enumerate(data["keys"]):
        where = f"keys[{index}]"
        if not isinstance(entry, dict):
            error(where, "expected {id, key, tenant}")
            continue
        for field in sorted(set(entry) - {"id", "key", "tenant"}):
            error(f"{where}.{field}", "unknown field: use only id, key and tenant")
        problems = _check_entry(entry)
        for field, message in problems:
            error(f"{where}.{field}", message)
        if problems:
            continue
        key_id, secret = entry["id"], entry["key"]
        if key_id in ids:
            error(
                f"{where}.id",
                f"{key_id!r} is already used by keys[{ids[key_id]}]: give each key its own id",
            )
        if secret in secrets:
            # The message names the other entry, never the key itself.
            error(
                f"{where}.key",
                f"the same key as keys[{secrets[secret]}]: give each client its own key",
            )
        ids.setdefault(key_id, index)
        secrets.setdefault(secret, index)
        keys.append(ApiKey(id=key_id, key=secret, tenant=entry["tenant"]))
    if errors:
        raise InvalidInput(errors)
    return keys


def _check_entry(entry: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for field in ("id", "tenant"):
        value = entry.get(field)
        if value is None:
            problems.append((field, "this field is required: add it"))
        elif not isinstance(value, str) or not NAME_PATTERN.match(value):
            problems.append((field, f"{value!r} is not a valid {field}: {NAME_RULE}"))
    key = entry.get("key")
    if key is None:
        problems.append(("key", "this field is required: add it"))
    elif not isinstance(key, str) or not KEY_PATTERN.match(key):
        problems.append(("key", KEY_RULE))
    return problems


def load_api_keys(path: str | Path) -> list[ApiKey]:
    source = str(path)
    # The loader reports only the place of a problem, never the line: it may hold a key.
    return parse_api_keys(load_one(read_bounded(Path(path)), source), source)


def read_api_keys_secret(policy: Any, secret: Mapping[str, Any] | None) -> list[ApiKey]:
    """The keys in a RoutingPolicy's `spec.gateway.apiKeySecret`, as the API returned it
    (None: it does not exist), or InvalidInput saying what to fix (never quoting a key)."""
    name = policy.spec.gateway.api_key_secret
    source = f"Secret {policy.namespace}/{name}"
    field = "spec.gateway.apiKeySecret"
    if secret is None:
        message = (
            f"Secret {name!r} does not exist: create it with a {API_KEYS_FIELD} entry "
            "`keys: [{id, key, tenant}]`"
        )
        raise InvalidInput([InputError(source, policy.ref, field, message)])
    encoded = (secret.get("data") or {}).get(API_KEYS_FIELD)
    if encoded is None:
        message = (
            f"Secret {name!r} has no {API_KEYS_FIELD!r} entry: add one holding "
            "`keys: [{id, key, tenant}]`"
        )
        raise InvalidInput([InputError(source, policy.ref, field, message)])
    try:
        text = base64.b64decode(encoded).decode("utf-8")
    except ValueError:
        message = "is not base64-encoded UTF-8 text (content not shown)"
        raise InvalidInput([InputError(source, policy.ref, API_KEYS_FIELD, message)]) from None
    return parse_api_keys(load_one(text, f"{source} {API_KEYS_FIELD}"), source)
