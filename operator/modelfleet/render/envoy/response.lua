-- The response side: reads `usage` from the answer (a small one whole, others as they pass),
-- and removes the usage event from a stream whose client did not ask for it.

-- The last "usage" object in text: prompt and completion tokens (completion is 0 for
-- embeddings), or nil.
local function usage_in(text)
  local at, last = 0, nil
  while true do
    at = find(text, '"usage"', at + 1, true)
    if at == nil then
      break
    end
    last = at
  end
  if last == nil then
    return nil
  end
  local object = match(text, '^"usage"%s*:%s*(%b{})', last)
  if object == nil then
    return nil
  end
  local prompt = match(object, '"prompt_tokens"%s*:%s*(%d+)')
  if prompt == nil then
    return nil
  end
  return tonumber(prompt), tonumber(match(object, '"completion_tokens"%s*:%s*(%d+)') or "0")
end

-- The next blank line (an SSE event's end) at or after `from`: where it starts and the
-- position after it; "\n\n", or "\r\n\r\n" from servers that end lines so.
local function next_gap(text, from)
  local lf = find(text, "\n\n", from, true)
  local crlf = find(text, "\r\n\r\n", from, true)
  if crlf ~= nil and (lf == nil or crlf < lf) then
    return crlf, crlf + 4
  elseif lf ~= nil then
    return lf, lf + 2
  end
  return nil
end

-- How much of text is whole events (the position after the last blank line, or 0).
local function whole_events(text)
  local found, from = 0, 1
  while true do
    local _, after = next_gap(text, from)
    if after == nil then
      return found
    end
    found = after - 1
    from = after
  end
end

-- text without the SSE event that holds position `at`.
local function without_event(text, at)
  local start, from = 1, 1
  while true do
    local gap, after = next_gap(text, from)
    if gap == nil or gap >= at then
      break
    end
    start, from = after, after
  end
  local _, stop = next_gap(text, at)
  if stop == nil then
    return text
  end
  return sub(text, 1, start - 1) .. sub(text, stop)
end

local USAGE_TAIL = 4096
-- The usage event is a few hundred bytes: a longer unfinished event is not held back.
local HELD_AT_MOST = 16384
-- An answer of a known length up to this size is read whole, at once: cheaper than chunk by
-- chunk (the client gets headers and body together, as from the backend). It is the smallest
-- body limit a gateway can have (GatewayLimits.max_body_bytes), so it always fits the buffer
-- (over it Envoy would answer 500); larger answers, and streams, are read as they pass.
local WHOLE_AT_MOST = 65536

local function count(handle, prompt, completion)
  local metadata = handle:streamInfo():dynamicMetadata()
  metadata:set(C.response_namespace, "prompt_tokens", prompt)
  metadata:set(C.response_namespace, "completion_tokens", completion)
end

-- A whole answer's usage: vLLM writes it near the end, so the tail is searched first.
local function count_whole(handle)
  local body = handle:body()
  if body == nil then
    return
  end
  local size = body:length()
  local from = size > USAGE_TAIL and size - USAGE_TAIL or 0
  local prompt, completion = usage_in(body:getBytes(from, size - from))
  if prompt == nil and from > 0 then
    prompt, completion = usage_in(body:getBytes(0, size))
  end
  if prompt ~= nil then
    count(handle, prompt, completion)
  end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  if headers:get(":status") ~= "200" then
    return
  end
  -- Only a stream's usage event may have to go; the request says whether it asked for it.
  local strip = false
  if find(headers:get("content-type") or "", "text/event-stream", 1, true) ~= nil then
    local request = handle:streamInfo():dynamicMetadata():get(C.namespace)
    strip = request ~= nil and request.usage == "injected"
  else
    local length = tonumber(headers:get("content-length") or "")
    if length ~= nil and length <= WHOLE_AT_MOST then
      return count_whole(handle)
    end
  end
  local prompt, completion
  local carry = ""
  for chunk in handle:bodyChunks() do
    local size = chunk:length()
    if size > 0 then
      local data = chunk:getBytes(0, size)
      if strip then
        -- Whole events only, so the usage event can be cut out; the rest waits for its end
        -- (a client cannot use half an event anyway).
        local text = carry .. data
        local complete = whole_events(text)
        if #text - complete > HELD_AT_MOST then
          -- An event this long is not the usage event: let it through.
          complete = #text
        end
        carry = sub(text, complete + 1)
        text = sub(text, 1, complete)
        local at = find(text, '"usage"', 1, true)
        if at ~= nil then
          local p, c = usage_in(text)
          if p ~= nil then
            prompt, completion = p, c
            text = without_event(text, at)
          end
        end
        if text ~= data then
          chunk:setBytes(text)
        end
      else
        local text = carry .. data
        if find(text, '"usage"', 1, true) ~= nil then
          local p, c = usage_in(text)
          if p ~= nil then
            prompt, completion = p, c
          end
        end
        -- Enough of the end to find a usage object split across two chunks.
        carry = sub(text, -USAGE_TAIL)
      end
    end
  end
  if prompt ~= nil then
    count(handle, prompt, completion)
  end
end
