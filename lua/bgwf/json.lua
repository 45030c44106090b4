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

local function encode_number(value, path)
  if math.type(value) == "integer" then
    return string.format("%d", value)
  end
  if value ~= value or value == math.huge or value == -math.huge then
    error({ path = path, reason = "NaN and infinite numbers have no JSON form" })
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
local function table_kind(t, path)
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
    error({ path = path, reason = "table key " .. tostring(has_other) ..
      " is neither a string nor a positive integer" })
  end
  if count == 0 then
    return "object", 0
  end
  if not has_string and max_index == count then
    return "array", count
  end
  if not has_string then
    error({ path = path, reason = "array has holes (highest index " .. max_index ..
      ", " .. count .. " values), which JSON arrays cannot represent" })
  end
  if max_index > 0 then
    error({ path = path, reason = "table mixes string keys and integer keys; JSON needs one or the other" })
  end
  return "object", count
end

local encode_value

local function encode_table(t, path, out, open, depth)
  if open[t] then
    error({ path = path, reason = "table refers to itself (a cycle), which JSON cannot hold" })
  end
  if depth > MAX_DEPTH then
    error({ path = path, reason = "nested deeper than " .. MAX_DEPTH .. " levels" })
  end
  open[t] = true
  local kind, length = table_kind(t, path)
  if kind == "array" then
    out[#out + 1] = "["
    for i = 1, length do
      if i > 1 then out[#out + 1] = "," end
      encode_value(t[i], path .. "[" .. i .. "]", out, open, depth + 1)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for key in pairs(t) do keys[#keys + 1] = key end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, key in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      encode_value(key, key_path(path, key), out, open, depth + 1)
      out[#out + 1] = ":"
      encode_value(t[key], key_path(path, key), out, open, depth + 1)
    end
    out[#out + 1] = "}"
  end
  open[t] = nil
end

encode_value = function(value, path, out, open, depth)
  local kind = type(value)
  if kind == "nil" then
    out[#out + 1] = "null"
  elseif kind == "boolean" then
    out[#out + 1] = value and "true" or "false"
  elseif kind == "number" then
    out[#out + 1] = encode_number(value, path)
  elseif kind == "string" then
    if not utf8.len(value) then
      error({ path = path, reason = "string is not valid UTF-8 (encode binary data, for example as hex)" })
    end
    out[#out + 1] = '"' .. value:gsub('[%c"\\]', escape_char) .. '"'
  elseif kind == "table" then
    encode_table(value, path, out, open, depth)
  else
    error({ path = path, reason = kind .. " values cannot be stored as JSON" })
  end
end

--- Encodes value as JSON text. Returns the text, or nil and a message that
--- names the path of the first value JSON cannot hold ("ctx.files[2]").
function M.encode(value, root)
  local out = {}
  local ok, failure = pcall(encode_value, value, root or "ctx", out, {}, 0)
  if not ok then
    if type(failure) == "table" then
      return nil, "at " .. failure.path .. ": " .. failure.reason
    end
    return nil, tostring(failure)
  end
  return table.concat(out)
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
