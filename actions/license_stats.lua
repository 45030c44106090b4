-- Counts the lines, words and bytes of the file ctx.path, finds its most
-- frequent word of five letters or more, and writes the figures as JSON to
-- ctx.output/ctx.token.json.
local json = require("bgwf.json")

return {
  execute = function(step, ctx)
    local file = assert(io.open(ctx.path, "rb"))
    local text = file:read("a")
    file:close()

    local lines = select(2, text:gsub("\n", "")) + ((#text > 0 and text:sub(-1) ~= "\n") and 1 or 0)
    local words, frequency = 0, {}
    for word in text:gmatch("%a+") do
      words = words + 1
      if #word >= 5 then
        word = word:lower()
        frequency[word] = (frequency[word] or 0) + 1
      end
    end
    local top, top_count = "-", 0
    for word, n in pairs(frequency) do
      if n > top_count or (n == top_count and word < top) then
        top, top_count = word, n
      end
    end

    local result = { file = ctx.path, lines = lines, words = words, bytes = #text,
                     top_word = top, top_count = top_count }
    local out = assert(io.open(ctx.output .. "/" .. ctx.token .. ".json", "w"))
    out:write(assert(json.encode(result)), "\n")
    out:close()
    step:status(string.format("%d lines, %d words, top word '%s'", lines, words, top))
  end,
}
