-- The response side: reads `usage` as the answer streams past, and removes the usage event
-- from a stream whose client did not ask for it.

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

-- Where text's last complete SSE event ends (the index of its final newline), or 0.
local function last_event_end(text)
  local at, found = 0, 0
  while true do
    at = find(text, "\n\n", at + 1, true)
    if at == nil then
      return found
    end
    found = at + 1
  end
end

-- text without the SSE event that carries "usage" (one that holds `at`).
local function without_event(text, at)
  local start = 1
  local search = 0
  while true do
    local gap = find(text, "\n\n", search + 1, true)
    if gap == nil or gap >= at then
      break
    end
    start = gap + 2
    search = gap
  end
  local stop = find(text, "\n\n", at, true)
  if stop == nil then
    return text
  end
  return sub(text, 1, start - 1) .. sub(text, stop + 2)
end

local USAGE_TAIL = 4096

function envoy_on_response(handle)
  local request = handle:streamInfo():dynamicMetadata():get(C.namespace)
  if request == nil or request.usage == nil then
    return
  end
  local headers = handle:headers()
  if headers:get(":status") ~= "200" then
    return
  end
  local strip = request.usage == "injected"
    and find(headers:get("content-type") or "", "text/event-stream", 1, true) ~= nil
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
        local complete = last_event_end(text)
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
    local metadata = handle:streamInfo():dynamicMetadata()
    metadata:set(C.response_namespace, "prompt_tokens", prompt)
    metadata:set(C.response_namespace, "completion_tokens", completion)
  end
end
