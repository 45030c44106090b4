-- A Lua action that does nothing: the cost of a step is all engine.
return {
  execute = function(step, ctx) end,
}
