--- JSON for step contexts: an encoder that names the offending value's
--- path, and a decoder that keeps integers integers (dkjson).
local dkjson = require("dkjson")

local M = {}

local MAX_DEPTH = 500

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function escape_char(c)
  return escapes[c] or string.format("\\u%04x", c:byte())
end

local function key_path(path, key)
  if type(key) == "string" and key:match("^[%a_][%w_]*$") then
    return path .. "." .. key
  end
  return path .. "[" .. (type(key) == "string" and string.format("%q", key) or tostring(key)) .. "]"
end

--- The path of the value being encoded, built only for an error message:
--- keys[1] to keys[depth] lead from the root to it.
local function path_of(state, depth)
  local path = state.root
  for i = 1, depth do
    path = key_path(path, state.keys[i])
  end
  return path
end

local function fail(state, depth, reason)
  error({ path = path_of(state, depth), reason = reason })
end

local function encode_number(value, state, depth)
  if math.type(value) == "integer" then
    return string.format("%d", value)
  end
  if value ~= value or value == math.huge or value == -math.huge then
    fail(state, depth, "NaN and infinite numbers have no JSON form")
  end
  local text = string.format("%.14g", value)
  if tonumber(text) ~= value then
    text = string.format("%.17g", value)
  end
  if not text:find("[.eE]") then
    text = text .. ".0"
  end
  return text
end

--- Returns "array" with its length when t is a sequence 1..n, else "object".
local function table_kind(t, state, depth)
  local count, max_index = 0, 0
  local has_string, has_other = false, nil
  for key in pairs(t) do
    count = count + 1
    if type(key) == "string" then
      has_string = true
    elseif math.type(key) == "integer" and key > 0 then
      if key > max_index then max_index = key end
    else
      has_other = key
    end
  end
  if has_other ~= nil then
    fail(state, depth, "table key " .. tostring(has_other) ..
      " is neither a string nor a positive integer")
  end
  if count == 0 then
    return "object", 0
  end
  if not has_string and max_index == count then
    return "array", count
  end
  if not has_string then
    fail(state, depth, "array has holes (highest index " .. max_index ..
      ", " .. count .. " values), which JSON arrays cannot represent")
  end
  if max_index > 0 then
    fail(state, depth, "table mixes string keys and integer keys; JSON needs one or the other")
  end
  return "object", count
end

local encode_value

local function encode_table(t, state, depth)
  local out, open = state.out, state.open
  if open[t] then
    fail(state, depth, "table refers to itself (a cycle), which JSON cannot hold")
  end
  if depth > MAX_DEPTH then
    fail(state, depth, "nested deeper than " .. MAX_DEPTH .. " levels")
  end
  open[t] = true
  local kind, length = table_kind(t, state, depth)
  local keys = state.keys
  if kind == "array" then
    out[#out + 1] = "["
    for i = 1, length do
      if i > 1 then out[#out + 1] = "," end
      keys[depth + 1] = i
      encode_value(t[i], state, depth + 1)
    end
    out[#out + 1] = "]"
  else
    local names = {}
    for key in pairs(t) do names[#names + 1] = key end
    table.sort(names)
    out[#out + 1] = "{"
    for i, key in ipairs(names) do
      if i > 1 then out[#out + 1] = "," end
      keys[depth + 1] = key
      encode_value(key, state, depth + 1)
      out[#out + 1] = ":"
      encode_value(t[key], state, depth + 1)
    end
    out[#out + 1] = "}"
  end
  open[t] = nil
end

encode_value = function(value, state, depth)
  local out = state.out
  local kind = type(value)
  if kind == "nil" then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = value and "true" or "false"
  elseif kind == "number" then
    out[#out + 1] = encode_number(value, state, depth)
  elseif kind == "string" then
    if not utf8.len(value) then
      fail(state, depth, "string is not valid UTF-8 (encode binary data, for example as hex)")
    end
    out[#out + 1] = '"' .. value:gsub('[%c"\\]', escape_char) .. '"'
  elseif kind == "table" then
    encode_table(value, state, depth)
  else
    fail(state, depth, kind .. " values cannot be stored as JSON")
  end
end

--- Encodes value as JSON text. Returns the text, or nil and a message that
--- names the path of the first value JSON cannot hold ("ctx.files[2]").
function M.encode(value, root)
  -- Most contexts of generated steps are empty: skip the walk.
  if type(value) == "table" and next(value) == nil and getmetatable(value) == nil then
    return "{}"
  end
  local state = { out = {}, open = {}, keys = {}, root = root or "ctx" }
  local ok, failure = pcall(encode_value, value, state, 0)
  if not ok then
    if type(failure) == "table" then
      return nil, "at " .. failure.path .. ": " .. failure.reason
    end
    return nil, tostring(failure)
  end
  return table.concat(state.out)
end

--- Decodes JSON text. Returns the value (JSON null becomes nil), or nil and
--- a message.
function M.decode(text)
  local value, position, message = dkjson.decode(text, 1, nil)
  if message then
    return nil, message .. " (at character " .. tostring(position) .. ")"
  end
  return value
end

return M
