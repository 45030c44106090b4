-- A step that never starts: its precondition is never met.
return {
  precondition = function(ctx) return false end,
  execute = function(step, ctx)
    error("bench_never must not run: its precondition is always false")
  end,
}
