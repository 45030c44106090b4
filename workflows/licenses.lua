-- Counts the lines, words and bytes of every license text in a folder (by
-- default /usr/share/common-licenses, present on every Debian machine), one
-- step per file, then writes a summary and publishes it once a time window
-- opens.
--
-- Context (all optional): source (folder to read), output (folder for the
-- results, default ./licenses-report), publish_delay (seconds from submit
-- before the report may be published, default 2).
local function list_files(folder)
  local listing = io.popen("find '" .. folder:gsub("'", "'\\''") .. "' -maxdepth 1 -type f -print")
  local files = {}
  for path in listing:lines() do
    files[#files + 1] = path
  end
  listing:close()
  table.sort(files)
  return files
end

return function(wf, ctx)
  local source = ctx.source or "/usr/share/common-licenses"
  local output = ctx.output or "licenses-report"
  local files = list_files(source)
  if #files == 0 then
    error("no files found in " .. source .. "; pass another folder as context.source")
  end

  local prepare = wf:step("prepare", "prepare_folder", { folder = output }, { cooldown = 0 })

  local count = wf:multistep("count", function(sub)
    local steps = {}
    for _, path in ipairs(files) do
      local token = path:match("([^/]+)$"):gsub("[^%w_]", "_")
      steps[#steps + 1] = sub:step(token, "license_stats",
                                   { path = path, output = output, token = token },
                                   { cooldown = 0 })
    end
    return steps
  end, { after = { prepare } })

  local summary = wf:step("summary", "license_summary", { output = output },
                          { after = { count }, cooldown = 0 })

  return {
    wf:step("publish", "publish_report",
            { output = output, not_before = os.time() + (ctx.publish_delay or 2) },
            { after = { summary }, cooldown = 1 }),
  }
end
