-- bgwf.json, the encoder of step contexts: the text it writes, and the
-- path and reason it gives for each value JSON cannot hold. The module is
-- loaded from lua/ as bgwf compiles it in.

local function repository_root()
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local folder = source:match("^(.*)/spec/[^/]*$") or "."
  return folder
end

package.path = repository_root() .. "/lua/?.lua;" .. package.path
local json = require("bgwf.json")

describe("bgwf.json.encode", function()
  it("writes an empty table as an object", function()
    assert.are.equal("{}", json.encode({}))
  end)

  it("writes keys sorted and numbers by subtype", function()
    local text = json.encode({ b = 1, a = 1.5, c = { 3, 2.0 }, d = "x\n" })
    assert.are.equal('{"a":1.5,"b":1,"c":[3,2.0],"d":"x\\n"}', text)
  end)

  it("round-trips through decode", function()
    local value = { files = { "a", "b" }, n = 7, ok = true, ratio = 0.25 }
    local decoded = json.decode(json.encode(value))
    assert.are.same(value, decoded)
    assert.are.equal("integer", math.type(decoded.n))
  end)

  local cases = {
    { "function in an array", { files = { "a", function() end } },
      "at ctx.files[2]: function values cannot be stored as JSON" },
    { "array with holes", { a = { [1] = 1, [3] = 3 } },
      "at ctx.a: array has holes (highest index 3, 2 values), which JSON arrays cannot represent" },
    { "NaN under an odd key", { ["odd key"] = { 0 / 0 } },
      'at ctx["odd key"][1]: NaN and infinite numbers have no JSON form' },
    { "mixed keys", { m = { 1, x = 2 } },
      "at ctx.m: table mixes string keys and integer keys; JSON needs one or the other" },
    { "boolean key", { [true] = 1 },
      "at ctx: table key true is neither a string nor a positive integer" },
    { "invalid UTF-8", { s = "\255" },
      "at ctx.s: string is not valid UTF-8 (encode binary data, for example as hex)" },
  }
  for _, case in ipairs(cases) do
    it("names the path of a " .. case[1], function()
      local text, message = json.encode(case[2])
      assert.is_nil(text)
      assert.are.equal(case[3], message)
    end)
  end

  it("names the path of a cycle", function()
    local inner = {}
    inner.self = inner
    local text, message = json.encode({ x = inner })
    assert.is_nil(text)
    assert.are.equal("at ctx.x.self: table refers to itself (a cycle), which JSON cannot hold",
      message)
  end)

  it("starts the path at the given root", function()
    local _, message = json.encode({ f = print }, "value")
    assert.are.equal("at value.f: function values cannot be stored as JSON", message)
  end)
end)
