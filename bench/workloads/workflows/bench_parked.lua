-- ctx.n independent steps whose precondition is never met, checked again
-- once an hour: they stay parked for the whole benchmark.
return function(wf, ctx)
  for i = 1, ctx.n or 100000 do
    wf:step("p" .. i, "bench_never", {}, { cooldown = 3600 })
  end
end
