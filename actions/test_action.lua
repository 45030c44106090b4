-- Sets the step's status message to ctx.message.
return {
  execute = function(step, ctx)
    step:status(ctx.message)
  end,
}
