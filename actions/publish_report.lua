-- Publishes the summary as ctx.output/REPORT.txt, but not before the Unix
-- time ctx.not_before: the precondition keeps the step waiting until then.
return {
  precondition = function(ctx)
    return os.time() >= ctx.not_before
  end,

  execute = function(step, ctx)
    local source = assert(io.open(ctx.output .. "/summary.txt"))
    local text = source:read("a")
    source:close()
    local target = assert(io.open(ctx.output .. "/REPORT.txt", "w"))
    target:write(text)
    target:close()
    step:status("published " .. ctx.output .. "/REPORT.txt")
  end,
}
