-- One step that is due as soon as it is stored.
return function(wf, ctx)
  wf:step("due", "noop", {}, { cooldown = 0 })
end
