-- Creates the folder ctx.folder (and its parents) for later steps' results.
return {
  execute = function(step, ctx)
    local ok, how, code = os.execute("mkdir -p '" .. ctx.folder:gsub("'", "'\\''") .. "'")
    if not ok then
      error(string.format("creating folder %s failed (%s %s)", ctx.folder, how, code))
    end
    step:status("folder " .. ctx.folder .. " ready")
  end,
}
