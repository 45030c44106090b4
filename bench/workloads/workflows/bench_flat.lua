-- ctx.n independent steps of ctx.action (default bench_noop).
return function(wf, ctx)
  local n = ctx.n or 10000
  local action = ctx.action or "bench_noop"
  for i = 1, n do
    wf:step("s" .. i, action, {}, { cooldown = 0 })
  end
end
