-- One head step, ctx.n middle steps that wait for it, one tail step that
-- waits for all of them; every step runs ctx.action (default bench_noop).
return function(wf, ctx)
  local n = ctx.n or 10000
  local action = ctx.action or "bench_noop"
  local head = wf:step("head", action, {}, { cooldown = 0 })
  local middle = {}
  for i = 1, n do
    middle[i] = wf:step("m" .. i, action, {}, { after = { head }, cooldown = 0 })
  end
  return { wf:step("tail", action, {}, { after = middle, cooldown = 0 }) }
end
