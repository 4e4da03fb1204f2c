-- JSON reading for the gateway's script (modelfleet, docs/gateway.md): a validating scanner
-- over the request body, string decoding and whitespace, objects and arrays walked with
-- callbacks. request.lua and response.lua follow it in one Lua chunk.
--
-- Cost: byte loops that LuaJIT compiles (a few ns per byte), and plain string.find
-- (memchr-like) to jump over string contents. No pattern matching runs over the body: Lua
-- patterns are interpreted, about 20 ns per byte.
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
  local stop = last
  if limit ~= nil and last - first + 1 > limit then
    stop = first + limit - 1
  end
  -- The backslashes come from next_slash, as for string_end: a search of its own from each
  -- string runs on to the body's end when no backslash follows, quadratic time in a body of
  -- many keys. Most strings (every key, as a rule) hold no escape.
  if next_slash(text, first) > stop then
    return sub(text, first, stop)
  end
  local out, count, pos = {}, 0, first
  while pos <= stop do
    local slash = next_slash(text, pos)
    if slash > stop then
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
