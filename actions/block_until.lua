-- Waits, without holding a process, until the Unix time ctx.until_epoch.
return {
  precondition = function(ctx)
    return os.time() >= ctx.until_epoch
  end,

  execute = function(step, ctx)
    step:status("waited until " .. os.date("!%Y-%m-%d %H:%M:%S UTC", ctx.until_epoch))
  end,
}
