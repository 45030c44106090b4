-- The example workflow of workflow2's BackgroundWorkflow, ported: action1
-- sets its status message from the context, the multi-step action2 runs
-- sub1 then sub2, and action3 waits for a time given in its context.
--
-- Context (all optional): message (text for action1), wait_seconds (how
-- long action3 waits, default 2), until_epoch (an absolute time instead).
return function(wf, ctx)
  local message = ctx.message or "hello from the simple workflow"
  local until_epoch = ctx.until_epoch or (os.time() + (ctx.wait_seconds or 2))

  local action1 = wf:step("action1", "test_action", { message = message })

  local action2 = wf:multistep("action2", function(sub)
    local sub1 = sub:step("sub1", "noop", {})
    return { sub:step("sub2", "noop", {}, { after = { sub1 }, cooldown = 0 }) }
  end, { after = { action1 } })

  return {
    wf:step("action3", "block_until", { until_epoch = until_epoch },
            { after = { action2 }, cooldown = 1 }),
  }
end
