-- The gateway's request and response script (modelfleet, docs/gateway.md).
--
-- Requests: reads the JSON body once, with a validating scanner, and everything the gateway
-- decides comes from that one reading: `model` and `task_type` for routing, the input check,
-- duplicate keys, the text classification rules look at, and `stream` (a stream is asked for
-- its token usage). Responses: reads `usage` as the answer streams past, and removes the usage
-- event from a stream whose client did not ask for it.
--
-- Cost: byte loops that LuaJIT compiles (a few ns per byte; 4 MiB of tiny array elements in
-- about 30 ms), and plain string.find (memchr-like) to jump over string contents. No pattern
-- matching runs over the body: Lua patterns are interpreted, about 20 ns per byte.
--
-- C, the gateway's own settings, is defined above this text by the renderer.

local byte, sub, find, match = string.byte, string.sub, string.find, string.match
local char, concat, floor = string.char, table.concat, math.floor

local MAX_DEPTH = 64

-- Unicode White_Space code points (what Python's str.isspace() treats as blank).
local WHITESPACE = {
  [0x09] = true, [0x0A] = true, [0x0B] = true, [0x0C] = true, [0x0D] = true,
  [0x1C] = true, [0x1D] = true, [0x1E] = true, [0x1F] = true, [0x20] = true,
  [0x85] = true, [0xA0] = true, [0x1680] = true, [0x2028] = true, [0x2029] = true,
  [0x202F] = true, [0x205F] = true, [0x3000] = true,
}
for code = 0x2000, 0x200A do
  WHITESPACE[code] = true
end

local ESCAPED = {
  [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
  [114] = "\r", [116] = "\t",
}

-- JSON scanning ----------------------------------------------------------------------------

local function skip_ws(text, pos)
  local c = byte(text, pos)
  while c == 32 or c == 10 or c == 13 or c == 9 do
    pos = pos + 1
    c = byte(text, pos)
  end
  return pos, c
end

local function hex4(text, pos)
  local digits = sub(text, pos, pos + 3)
  if #digits ~= 4 or find(digits, "[^%x]") then
    return nil
  end
  return tonumber(digits, 16)
end

-- Where the next backslash is, remembered between strings: they are scanned in order, and
-- searching afresh for each one would cost quadratic time in a body without backslashes.
local slash_text, slash_from, slash_at = nil, 0, 0

local function next_slash(text, at)
  if slash_text ~= text or at < slash_from or at > slash_at then
    slash_text, slash_from = text, at
    slash_at = find(text, "\\", at, true) or math.huge
  end
  return slash_at
end

-- text[pos] is '"': the position after the closing quote, or nil (also for a broken escape;
-- control characters inside strings are left to the model server to refuse).
local function string_end(text, pos)
  local at = pos + 1
  local quote = find(text, '"', at, true)
  while quote ~= nil do
    local slash = next_slash(text, at)
    if slash > quote then
      return quote + 1
    end
    local e = byte(text, slash + 1)
    if e == 117 then
      if hex4(text, slash + 2) == nil then
        return nil
      end
      at = slash + 6
    elseif ESCAPED[e] ~= nil then
      at = slash + 2
    else
      return nil
    end
    if quote < at then
      quote = find(text, '"', at, true)
    end
  end
  return nil
end

local function is_digit(c)
  return c ~= nil and c >= 48 and c <= 57
end

local function digits_end(text, pos)
  local c = byte(text, pos)
  if not is_digit(c) then
    return nil
  end
  repeat
    pos = pos + 1
    c = byte(text, pos)
  until not is_digit(c)
  return pos, c
end

-- A JSON number at pos (c is its first byte): the position after it, or nil.
local function number_end(text, pos, c)
  if c == 45 then
    pos = pos + 1
    c = byte(text, pos)
  end
  if c == 48 then
    pos = pos + 1
    c = byte(text, pos)
  else
    pos, c = digits_end(text, pos)
    if pos == nil then
      return nil
    end
  end
  if c == 46 then
    pos, c = digits_end(text, pos + 1)
    if pos == nil then
      return nil
    end
  end
  if c == 101 or c == 69 then
    pos = pos + 1
    c = byte(text, pos)
    if c == 43 or c == 45 then
      pos = pos + 1
    end
    pos = digits_end(text, pos)
  end
  return pos
end

local function literal_end(text, pos, c)
  if c == 116 then
    if byte(text, pos + 1) == 114 and byte(text, pos + 2) == 117 and byte(text, pos + 3) == 101 then
      return pos + 4
    end
  elseif c == 102 then
    if byte(text, pos + 1) == 97 and byte(text, pos + 2) == 108 and byte(text, pos + 3) == 115
        and byte(text, pos + 4) == 101 then
      return pos + 5
    end
  elseif c == 110 then
    if byte(text, pos + 1) == 117 and byte(text, pos + 2) == 108 and byte(text, pos + 3) == 108 then
      return pos + 4
    end
  end
  return nil
end

-- The position after the JSON value that starts at pos, at nesting `depth`; nil if it is not
-- valid JSON. Containers are walked with an explicit stack: nesting costs no Lua recursion.
local function value_end(text, pos, depth)
  local closers, top = {}, 0
  local c = byte(text, pos)
  while true do
    local opened = false
    if c == 34 then
      pos = string_end(text, pos)
    elseif c == 123 or c == 91 then
      top = top + 1
      if depth + top > MAX_DEPTH then
        return nil
      end
      closers[top] = c + 2 -- '{' -> '}', '[' -> ']'
      pos, c = skip_ws(text, pos + 1)
      if c == closers[top] then
        top = top - 1
        pos = pos + 1
      else
        opened = true
      end
    elseif c == 116 or c == 102 or c == 110 then
      pos = literal_end(text, pos, c)
    else
      pos = number_end(text, pos, c)
    end
    if pos == nil then
      return nil
    end
    if not opened then
      -- Close what ends here, up to a comma (another element or member follows).
      while true do
        if top == 0 then
          return pos
        end
        pos, c = skip_ws(text, pos)
        if c == 44 then
          pos, c = skip_ws(text, pos + 1)
          break
        elseif c == closers[top] then
          top = top - 1
          pos = pos + 1
        else
          return nil
        end
      end
    end
    if closers[top] == 125 then
      -- In an object: a key and a colon come before the value.
      if c ~= 34 then
        return nil
      end
      pos = string_end(text, pos)
      if pos == nil then
        return nil
      end
      pos, c = skip_ws(text, pos)
      if c ~= 58 then
        return nil
      end
      pos, c = skip_ws(text, pos + 1)
    end
  end
end

-- Strings -------------------------------------------------------------------------------------

local function utf8_char(code)
  if code < 0x80 then
    return char(code)
  elseif code < 0x800 then
    return char(0xC0 + floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return char(0xE0 + floor(code / 0x1000), 0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return char(0xF0 + floor(code / 0x40000), 0x80 + floor(code / 0x1000) % 0x40,
    0x80 + floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

-- The code point of the UTF-8 sequence at pos and its length, or nil.
local function utf8_at(text, pos)
  local c = byte(text, pos)
  local size, code
  if c >= 0xF0 then
    size, code = 4, c - 0xF0
  elseif c >= 0xE0 then
    size, code = 3, c - 0xE0
  elseif c >= 0xC0 then
    size, code = 2, c - 0xC0
  else
    return nil
  end
  for index = pos + 1, pos + size - 1 do
    local next_byte = byte(text, index)
    if next_byte == nil or next_byte < 0x80 or next_byte > 0xBF then
      return nil
    end
    code = code * 0x40 + next_byte - 0x80
  end
  return code, size
end

-- The text of the JSON string content text[first..last] (escapes resolved), cut after about
-- `limit` bytes; nil on a broken escape (only when limit is nil: a cut may split one).
local function decode(text, first, last, limit)
  local out, count, pos = {}, 0, first
  local stop = last
  if limit ~= nil and last - first + 1 > limit then
    stop = first + limit - 1
  end
  while pos <= stop do
    local slash = find(text, "\\", pos, true)
    if slash == nil or slash > stop then
      count = count + 1
      out[count] = sub(text, pos, stop)
      break
    end
    count = count + 1
    out[count] = sub(text, pos, slash - 1)
    local e = byte(text, slash + 1)
    if e == 117 then
      local code = hex4(text, slash + 2)
      if code == nil then
        if limit ~= nil then
          break
        end
        return nil
      end
      pos = slash + 6
      if code >= 0xD800 and code <= 0xDBFF and byte(text, pos) == 92 and byte(text, pos + 1) == 117 then
        local low = hex4(text, pos + 2)
        if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          pos = pos + 6
        end
      end
      count = count + 1
      out[count] = utf8_char(code)
    else
      local plain = ESCAPED[e]
      if plain == nil then
        if limit ~= nil then
          break
        end
        return nil
      end
      count = count + 1
      out[count] = plain
      pos = slash + 2
    end
  end
  return concat(out)
end

-- Whether the JSON string content text[first..last] is empty or only whitespace, written
-- plainly or escaped. Stops at the first other character, so long prompts cost nothing.
local function is_blank(text, first, last)
  local pos = first
  while pos <= last do
    local c = byte(text, pos)
    if c == 32 or c == 9 or c == 10 or c == 13 then
      pos = pos + 1
    elseif c == 92 then
      local e = byte(text, pos + 1)
      if e == 117 then
        local code = hex4(text, pos + 2)
        if code == nil or not WHITESPACE[code] then
          return false
        end
        pos = pos + 6
      elseif e == 110 or e == 114 or e == 116 or e == 102 then
        pos = pos + 2
      else
        return false
      end
    elseif c < 0x80 then
      return false
    else
      local code, size = utf8_at(text, pos)
      if code == nil or not WHITESPACE[code] then
        return false
      end
      pos = pos + size
    end
  end
  return true
end

-- A JSON string literal of `text` (for error messages that name a key).
local function json_string(text)
  text = sub(text, 1, 64)
  return '"' .. string.gsub(text, '[%c"\\\127-\255]', function(c)
    return string.format("\\u%04x", byte(c))
  end) .. '"'
end

-- Objects -------------------------------------------------------------------------------------

-- Walks the object at pos (text[pos] == '{'), calling on_member(name, value_pos) for each
-- member; on_member returns the position after the value, or nil and an error. Returns the
-- position after the object, or nil, error kind, key (kind "duplicate" names the key).
local function walk_object(text, pos, on_member)
  local seen = {}
  local c
  pos, c = skip_ws(text, pos + 1)
  if c == 125 then
    return pos + 1
  end
  while true do
    if c ~= 34 then
      return nil, "not_json"
    end
    local close = string_end(text, pos)
    if close == nil then
      return nil, "not_json"
    end
    local name = decode(text, pos + 1, close - 2)
    if name == nil then
      return nil, "not_json"
    end
    if seen[name] then
      return nil, "duplicate", name
    end
    seen[name] = true
    pos, c = skip_ws(text, close)
    if c ~= 58 then
      return nil, "not_json"
    end
    pos = skip_ws(text, pos + 1)
    local after, kind, detail = on_member(name, pos)
    if after == nil then
      return nil, kind or "not_json", detail
    end
    pos, c = skip_ws(text, after)
    if c == 44 then
      pos, c = skip_ws(text, pos + 1)
    elseif c == 125 then
      return pos + 1
    else
      return nil, "not_json"
    end
  end
end

-- Walks the array at pos (text[pos] == '['), calling on_element(index, value_pos), which
-- returns the position after the element or nil, error. Returns the position after the array.
local function walk_array(text, pos, on_element)
  local c
  pos, c = skip_ws(text, pos + 1)
  if c == 93 then
    return pos + 1
  end
  local index = 0
  while true do
    local after, kind, detail = on_element(index, pos)
    if after == nil then
      return nil, kind or "not_json", detail
    end
    index = index + 1
    pos, c = skip_ws(text, after)
    if c == 44 then
      pos = skip_ws(text, pos + 1)
    elseif c == 93 then
      return pos + 1
    else
      return nil, "not_json"
    end
  end
end

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
local function read_error(field, path, kind, detail)
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

local function classify(handle, headers, text, input)
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

-- Entry points ----------------------------------------------------------------------------------

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
    return reject(handle, read_error(field, path, kind, detail))
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
      return reject(handle, read_error(field, path, usage, detail))
    end
    if sent ~= text then
      body:setBytes(sent)
      if headers:get("content-length") ~= nil then
        headers:replace("content-length", tostring(#sent))
      end
    end
  end
  metadata:set(C.namespace, "usage", usage or "answer")
  if C.classify and not model and not task_type and C.streaming[path]
      and headers:get(C.task_type_header) == nil then
    classify(handle, headers, text, request.input)
  end
  handle:clearRouteCache()
end

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
