-- The request side: reads the JSON body once, and everything the gateway decides comes from
-- that one reading: `model` and `task_type` for routing, the input check, duplicate keys, the
-- text classification rules look at, and `stream` (a stream is asked for its token usage).

-- The input field -------------------------------------------------------------------------------

-- A value of the wrong type is refused as such only if it is valid JSON at all.
local function wrong_type(text, pos, kind, detail)
  if value_end(text, pos, 3) == nil then
    return nil, "not_json"
  end
  return nil, kind, detail
end

-- What the walkers learn about the prompt: whether any of it is not blank, its size, and where
-- the texts classification rules look at are.
local function new_input()
  return { filled = false, chars = 0, last_user = nil, system = nil }
end

-- A string value: its content's [first, last], counted into `input`.
local function string_value(text, pos, input)
  local after = string_end(text, pos)
  if after == nil then
    return nil
  end
  local first, last = pos + 1, after - 2
  input.chars = input.chars + (last - first + 1)
  if not input.filled and not is_blank(text, first, last) then
    input.filled = true
  end
  return after, first, last
end

-- A message's content: a string, null, or a list of parts ({"type": "text", "text": ...} or
-- another kind, such as an image, which counts as input). Returns the position after it and
-- the text spans it holds.
local function content_value(text, pos, input, index)
  local c = byte(text, pos)
  if c == 34 then
    local after, first, last = string_value(text, pos, input)
    return after, { { first, last } }
  elseif c == 110 then
    return literal_end(text, pos, c), {}
  elseif c ~= 91 then
    return wrong_type(text, pos, "invalid_content", index)
  end
  local spans = {}
  local after, kind, detail = walk_array(text, pos, function(part, part_pos)
    if byte(text, part_pos) ~= 123 then
      return wrong_type(text, part_pos, "invalid_content", index)
    end
    local kind_of_part, span
    local part_end, part_kind, part_detail = walk_object(text, part_pos, function(name, value_pos)
      if name == "type" and byte(text, value_pos) == 34 then
        local type_end = string_end(text, value_pos)
        kind_of_part = type_end and sub(text, value_pos + 1, type_end - 2)
        return type_end
      elseif name == "text" and byte(text, value_pos) == 34 then
        local text_end, first, last = string_value(text, value_pos, input)
        span = { first, last }
        return text_end
      end
      return value_end(text, value_pos, 5)
    end)
    if part_end == nil then
      if part_kind == "duplicate" then
        part_detail = string.format("messages[%d].content[%d].%s", index, part, part_detail)
      end
      return nil, part_kind, part_detail
    end
    if kind_of_part ~= nil and kind_of_part ~= "text" then
      input.filled = true
    elseif span ~= nil then
      spans[#spans + 1] = span
    end
    return part_end
  end)
  if after == nil then
    return nil, kind, detail
  end
  return after, spans
end

-- `messages`: a non-empty array of message objects, some with a non-blank content.
local function walk_messages(text, pos, input)
  local c = byte(text, pos)
  if c == 110 then
    return literal_end(text, pos, c)
  elseif c ~= 91 then
    return wrong_type(text, pos, "invalid_messages")
  end
  return walk_array(text, pos, function(index, message_pos)
    if byte(text, message_pos) ~= 123 then
      return wrong_type(text, message_pos, "invalid_message", index)
    end
    local role, spans
    local after, kind, detail = walk_object(text, message_pos, function(name, value_pos)
      if name == "role" and byte(text, value_pos) == 34 then
        local role_end = string_end(text, value_pos)
        role = role_end and sub(text, value_pos + 1, role_end - 2)
        return role_end
      elseif name == "content" then
        local content_end, content_spans, content_detail = content_value(text, value_pos, input, index)
        if content_end == nil then
          return nil, content_spans, content_detail
        end
        spans = content_spans
        return content_end
      end
      return value_end(text, value_pos, 3)
    end)
    if after == nil then
      if kind == "duplicate" then
        detail = string.format("messages[%d].%s", index, detail)
      end
      return nil, kind, detail
    end
    if spans ~= nil then
      if role == "user" then
        input.last_user = spans
      elseif (role == "system" or role == "developer") and input.system == nil then
        input.system = spans
      end
    end
    return after
  end)
end

-- `prompt` or `input`: a string, token ids, or a list of strings or token-id lists.
local function walk_prompt(text, pos, input)
  local c = byte(text, pos)
  if c == 34 then
    local after, first, last = string_value(text, pos, input)
    input.last_user = { { first, last } }
    return after
  elseif c == 110 then
    return literal_end(text, pos, c)
  elseif c ~= 91 then
    return wrong_type(text, pos, "invalid_prompt")
  end
  return walk_array(text, pos, function(_, element_pos)
    local e = byte(text, element_pos)
    if e == 34 then
      local after, first, last = string_value(text, element_pos, input)
      input.last_user = { { first, last } }
      return after
    elseif e == 91 then
      -- A list of token ids: each counts as a token (4 characters).
      return walk_array(text, element_pos, function(_, id_pos)
        local id = byte(text, id_pos)
        if id ~= 45 and not is_digit(id) then
          return wrong_type(text, id_pos, "invalid_prompt")
        end
        input.filled = true
        input.chars = input.chars + 4
        return number_end(text, id_pos, id)
      end)
    elseif e ~= 45 and not is_digit(e) then
      return wrong_type(text, element_pos, "invalid_prompt")
    end
    input.filled = true
    input.chars = input.chars + 4
    return number_end(text, element_pos, e)
  end)
end

-- The request ---------------------------------------------------------------------------------

-- Reads the request body: the top-level members the gateway uses, and the input field walked.
-- Returns a table, or nil, error kind, detail.
local function read_request(text, field)
  slash_text = nil
  local pos, c = skip_ws(text, 1)
  if c ~= 123 then
    if c == nil then
      return nil, "no_body"
    end
    return nil, value_end(text, pos, 0) and "not_object" or "not_json"
  end
  local request = { input = new_input(), member = {}, member_end = {} }
  local after, kind, detail = walk_object(text, pos, function(name, value_pos)
    request.member[name] = value_pos
    local value_stop, value_kind, value_detail
    if name == field then
      if field == "messages" then
        value_stop, value_kind, value_detail = walk_messages(text, value_pos, request.input)
      else
        value_stop, value_kind, value_detail = walk_prompt(text, value_pos, request.input)
      end
    else
      value_stop = value_end(text, value_pos, 1)
    end
    request.member_end[name] = value_stop
    return value_stop, value_kind, value_detail
  end)
  if after == nil then
    return nil, kind, detail
  end
  if skip_ws(text, after) <= #text then
    return nil, "not_json"
  end
  request.close = after - 1 -- the top-level '}'
  return request
end

-- A top-level string member, decoded; false when absent or null; nil when of another type.
local function string_member(text, request, name)
  local pos = request.member[name]
  if pos == nil then
    return false
  end
  local c = byte(text, pos)
  if c == 110 then
    return false
  elseif c ~= 34 then
    return nil
  end
  return decode(text, pos + 1, request.member_end[name] - 2)
end

local function error_body(message, param, code)
  return string.format('{"error":{"message":%s,"type":"invalid_request_error","param":%s,"code":"%s"}}',
    json_string(message), param and json_string(param) or "null", code)
end

local function reject(handle, body)
  handle:respond({ [":status"] = "400", ["content-type"] = "application/json" }, body)
end

-- The error body for a read_request failure.
local function read_error(field, kind, detail)
  if kind == "duplicate" then
    return error_body(string.format("the key '%s' appears twice in an object the gateway reads: "
      .. "send each key once", detail), detail, "duplicate_key")
  elseif kind == "invalid_messages" then
    return error_body("'messages' must be a list of message objects", "messages", "invalid_type")
  elseif kind == "invalid_message" then
    return error_body(string.format("messages[%d] must be an object with 'role' and 'content'",
      detail), "messages", "invalid_type")
  elseif kind == "invalid_content" then
    return error_body(string.format("messages[%d].content must be a string, null or a list of "
      .. "content parts", detail), "messages", "invalid_type")
  elseif kind == "invalid_prompt" then
    return error_body(string.format("'%s' must be a string, a list of strings or token ids",
      field), field, "invalid_type")
  end
  return C.errors[kind] or C.errors.not_json
end

-- Stream usage: a stream that did not ask for usage in its final chunk is made to; the
-- response script removes that chunk again. Returns the body to send, and "asked" or
-- "injected" (nil when the request does not stream).
local INCLUDE_USAGE = '"include_usage":true'

local function ask_for_usage(text, request)
  local stream = request.member.stream
  if stream == nil or byte(text, stream) ~= 116 then
    return text, nil
  end
  local options = request.member.stream_options
  if options == nil then
    return sub(text, 1, request.close - 1) .. ',"stream_options":{' .. INCLUDE_USAGE .. "}"
      .. sub(text, request.close), "injected"
  end
  local c = byte(text, options)
  if c == 110 then
    return sub(text, 1, options - 1) .. "{" .. INCLUDE_USAGE .. "}" .. sub(text, options + 4), "injected"
  elseif c ~= 123 then
    return text, nil
  end
  local asked = false
  local last = request.member_end.stream_options - 1 -- its '}'
  local after, kind, detail = walk_object(text, options, function(name, value_pos)
    if name == "include_usage" and byte(text, value_pos) == 116 then
      asked = true
    end
    return value_end(text, value_pos, 2)
  end)
  if after == nil then
    return nil, kind, "stream_options." .. tostring(detail)
  end
  if asked then
    return text, "asked"
  end
  local empty = skip_ws(text, options + 1) == last
  return sub(text, 1, last - 1) .. (empty and "" or ",") .. INCLUDE_USAGE .. sub(text, last), "injected"
end

-- Classification ------------------------------------------------------------------------------

-- The text of `spans` for a request header: escapes resolved, control characters as spaces,
-- at most `limit` bytes and never a split UTF-8 character.
local function header_text(text, spans, limit)
  local parts, size = {}, 0
  for index = 1, #spans do
    if size >= limit then
      break
    end
    local piece = decode(text, spans[index][1], spans[index][2], limit - size)
    parts[#parts + 1] = piece
    size = size + #piece + 1
  end
  local joined = string.gsub(concat(parts, " "), "[%c]", " ")
  if #joined > limit then
    local cut = limit
    while cut > 0 and (byte(joined, cut + 1) or 0) >= 0x80 and byte(joined, cut + 1) < 0xC0 do
      cut = cut - 1
    end
    joined = sub(joined, 1, cut)
  end
  return joined
end

local function classify(headers, text, input)
  local names = C.classify_headers
  if C.classify.last_user and input.last_user ~= nil then
    headers:replace(names.last_user, header_text(text, input.last_user, C.classify.prefix))
  end
  if C.classify.system and input.system ~= nil then
    headers:replace(names.system, header_text(text, input.system, C.classify.prefix))
  end
  headers:replace(names.chars, tostring(input.chars))
  headers:replace(names.tokens, tostring(math.ceil(input.chars / 4)))
end

-- The entry point ----------------------------------------------------------------------------

function envoy_on_request(handle)
  local headers = handle:headers()
  local client = headers:get(C.client_header)
  local tenant = client and C.tenants[client]
  if tenant then
    headers:replace(C.tenant_header, tenant)
  end
  if headers:get(":method") ~= "POST" then
    return
  end
  local path = headers:get(":path") or ""
  local query = find(path, "?", 1, true)
  if query then
    path = sub(path, 1, query - 1)
  end
  local field = C.input_field[path]
  if field == nil then
    return
  end
  -- A key over a spent `block` budget (its own or its tenant's): OpenAI's 429, before the body
  -- is read. One over a `degrade` budget is marked below for the routes' cheaper backends.
  local gate = client and C.over_budget[client]
  if gate and gate.action == "block" then
    handle:streamInfo():dynamicMetadata():set(C.namespace, "budget", gate.action)
    return handle:respond({ [":status"] = "429", ["content-type"] = "application/json" }, gate.body)
  end
  -- A body over the listener's buffer limit never gets here: Envoy answers 413 once its
  -- buffer is full. (Refusing earlier, on content-length, would close the connection on a
  -- client still sending, which most clients then see as a reset instead of the 413.)
  local body = handle:body()
  if body == nil or body:length() == 0 then
    return reject(handle, C.errors.no_body)
  end
  local text = body:getBytes(0, body:length())
  -- Objects from before the body arrived are out of scope now: ask again.
  headers = handle:headers()
  local request, kind, detail = read_request(text, field)
  if request == nil then
    return reject(handle, read_error(field, kind, detail))
  end
  local model = string_member(text, request, "model")
  local task_type = string_member(text, request, "task_type")
  if model == nil then
    return reject(handle, C.errors.model_not_string)
  elseif task_type == nil then
    return reject(handle, C.errors.task_type_not_string)
  end
  -- Routing reads these, and the audit log of refused requests too.
  local metadata = handle:streamInfo():dynamicMetadata()
  if model then
    metadata:set(C.namespace, "model", model)
  end
  if task_type then
    metadata:set(C.namespace, "task_type", task_type)
  end
  if request.member[field] == nil then
    return reject(handle, C.errors["missing_" .. field])
  end
  if not request.input.filled then
    return reject(handle, C.errors["empty_" .. field])
  end
  local usage = nil
  if C.streaming[path] then
    local sent
    sent, usage, detail = ask_for_usage(text, request)
    if sent == nil then
      return reject(handle, read_error(field, usage, detail))
    end
    if sent ~= text then
      body:setBytes(sent)
      if headers:get("content-length") ~= nil then
        headers:replace("content-length", tostring(#sent))
      end
    end
  end
  -- Only a stream's: every metadata entry costs the gateway time on each request.
  if usage then
    metadata:set(C.namespace, "usage", usage)
  end
  if gate then
    metadata:set(C.namespace, "budget", gate.action)
    headers:replace(C.budget_header, C.budget_degraded)
  end
  if C.classify and not model and not task_type and C.streaming[path]
      and headers:get(C.task_type_header) == nil then
    classify(headers, text, request.input)
  end
  handle:clearRouteCache()
end
