-- Ten steps: one head, eight middle steps that wait for it, one tail.
return function(wf, ctx)
  local head = wf:step("head", "bench_noop", {}, { cooldown = 0 })
  local middle = {}
  for i = 1, 8 do
    middle[i] = wf:step("m" .. i, "bench_noop", {}, { after = { head }, cooldown = 0 })
  end
  return { wf:step("tail", "bench_noop", {}, { after = middle, cooldown = 0 }) }
end
