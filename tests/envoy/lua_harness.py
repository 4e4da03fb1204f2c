"""The gateway's Lua script in LuaJIT 2.1 (PyPI lupa, the Lua Envoy embeds) with a stand-in
for Envoy's stream handle: fast checks of the body scanner on many inputs. The real Envoy
runs the same script in the tests beside this one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelfleet.api.routingpolicy import Classification
from modelfleet.render.envoy.lua import gateway_script

_HANDLE = r"""
return function(request_headers, body_text, chunks)
  local state = { metadata = {}, responded = nil, cleared = false, body = body_text,
                  headers = request_headers, out = {} }
  local headers = {}
  function headers:get(name) return state.headers[name] end
  function headers:replace(name, value) state.headers[name] = value end
  local body = nil
  if body_text ~= nil then
    body = {}
    function body:length() return #state.body end
    function body:getBytes(start, size) return string.sub(state.body, start + 1, start + size) end
    function body:setBytes(text) state.body = text end
  end
  local metadata = {}
  function metadata:set(namespace, key, value)
    state.metadata[namespace] = state.metadata[namespace] or {}
    state.metadata[namespace][key] = value
  end
  function metadata:get(namespace) return state.metadata[namespace] end
  local info = {}
  function info:dynamicMetadata() return metadata end
  local handle = {}
  function handle:headers() return headers end
  function handle:body() return body end
  function handle:streamInfo() return info end
  function handle:respond(response_headers, response_body)
    state.responded = { response_headers[":status"], response_body }
  end
  function handle:clearRouteCache() state.cleared = true end
  function handle:bodyChunks()
    local index = 0
    return function()
      index = index + 1
      local data = chunks[index]
      if data == nil then return nil end
      local chunk = { data = data }
      function chunk:length() return #self.data end
      function chunk:getBytes(start, size) return string.sub(self.data, start + 1, start + size) end
      function chunk:setBytes(text) self.data = text end
      -- What passes downstream is whatever the chunk holds when the loop asks for the next.
      state.out[#state.out + 1] = chunk
      return chunk
    end
  end
  return handle, state
end
"""


@dataclass
class Outcome:
    status: str | None  # "400" when the script answered itself, else None
    body: str | None  # the error body, or the request body as forwarded
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    route_cleared: bool = False

    def error(self) -> dict[str, Any]:
        import json

        assert self.status == "400", f"expected a 400, got {self.status}: {self.body}"
        return json.loads(self.body or "")["error"]


def _to_python(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _to_python(v) for k, v in value.items()}
    return value


# Counts the bytes string.find looks at (from where it starts to the match, or to the end): the
# script takes its `find` when loaded, so this is installed before it.
_COUNT_SCANS = r"""
local real_find = string.find
scanned = 0
string.find = function(text, pattern, init, plain)
  local first, last = real_find(text, pattern, init, plain)
  local from = init or 1
  if from < 0 then from = #text + from + 1 end
  scanned = scanned + ((first or #text + 1) - from)
  return first, last
end
"""


class LuaGateway:
    """The script of one gateway, loaded once. With `count_scans`, `scanned` says how many
    bytes string.find looked at since the last request."""

    def __init__(
        self,
        tenants: Mapping[str, str] | None = None,
        classification: Classification | None = None,
        count_scans: bool = False,
    ):
        from lupa import luajit21

        self.runtime = luajit21.LuaRuntime(encoding=None)
        if count_scans:
            self.runtime.execute(_COUNT_SCANS.encode())
        script = gateway_script(tenants or {}, classification)
        self.runtime.execute(script.encode())
        self._make_handle = self.runtime.execute(_HANDLE.encode())
        self._on_request = self.runtime.globals().envoy_on_request
        self._on_response = self.runtime.globals().envoy_on_response

    def _table(self, values: Mapping[str, str]) -> Any:
        return self.runtime.table_from({k.encode(): v.encode() for k, v in values.items()})

    def request(
        self,
        body: bytes | None,
        path: str = "/v1/chat/completions",
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Outcome:
        all_headers = {":method": method, ":path": path, **(headers or {})}
        handle, state = self._make_handle(self._table(all_headers), body, self.runtime.table())
        self.runtime.globals().scanned = 0
        self._on_request(handle)
        self.scanned = self.runtime.globals().scanned
        responded = state.responded
        metadata = {
            ns.decode(): {k.decode(): _decode(v) for k, v in values.items()}
            for ns, values in _to_python(state.metadata).items()
        }
        if responded is not None:
            return Outcome(responded[1].decode(), responded[2].decode(), metadata)
        forwarded = state.body
        return Outcome(
            None,
            forwarded.decode() if forwarded is not None else None,
            metadata,
            {k.decode(): v.decode() for k, v in _to_python(state.headers).items()},
            bool(state.cleared),
        )

    def response(
        self,
        chunks: Sequence[bytes],
        usage: str,
        content_type: str = "application/json",
        status: str = "200",
        known_length: bool = False,
    ) -> tuple[list[bytes], dict[str, Any]]:
        """What the client receives chunk by chunk, and the response metadata the script set.
        `known_length` sends a content-length; the script may then read the body whole
        (`handle:body()`)."""
        answer_headers = {":status": status, "content-type": content_type}
        whole = b"".join(chunks)
        if known_length:
            answer_headers["content-length"] = str(len(whole))
        headers = self._table(answer_headers)
        handle, state = self._make_handle(headers, whole, self.runtime.table_from(list(chunks)))
        self.read_by_chunks = False
        state.metadata = self.runtime.table_from(
            {b"modelfleet.request": self.runtime.table_from({b"usage": usage.encode()})}
        )
        self._on_response(handle)
        # A script that does not iterate the chunks lets them all through as they are.
        self.read_by_chunks = len(state.out) > 0
        sent = [chunk.data for chunk in state.out.values()] or list(chunks)
        metadata = _to_python(state.metadata).get(b"modelfleet.response") or {}
        return sent, {k.decode(): v for k, v in metadata.items()}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
