-- Reads every per-file result in ctx.output and writes ctx.output/summary.txt
-- with the totals and the five longest texts.
local json = require("bgwf.json")

return {
  execute = function(step, ctx)
    local results = {}
    local listing = io.popen("find '" .. ctx.output:gsub("'", "'\\''") .. "' -maxdepth 1 -name '*.json'")
    for path in listing:lines() do
      local file = assert(io.open(path))
      results[#results + 1] = assert(json.decode(file:read("a")))
      file:close()
    end
    listing:close()
    if #results == 0 then
      error("no results found in " .. ctx.output)
    end

    table.sort(results, function(a, b) return a.words > b.words end)
    local lines, words, bytes = 0, 0, 0
    for _, r in ipairs(results) do
      lines, words, bytes = lines + r.lines, words + r.words, bytes + r.bytes
    end

    local out = assert(io.open(ctx.output .. "/summary.txt", "w"))
    out:write(string.format("%d license texts: %d lines, %d words, %d bytes\n",
                            #results, lines, words, bytes))
    out:write("longest by words:\n")
    for i = 1, math.min(5, #results) do
      local r = results[i]
      out:write(string.format("  %-45s %7d words  top word '%s' (%d times)\n",
                              r.file, r.words, r.top_word, r.top_count))
    end
    out:close()
    step:status(string.format("%d texts, %d words in all", #results, words))
  end,
}
