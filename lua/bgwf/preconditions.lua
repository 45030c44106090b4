--- Helpers for action preconditions. Each returns true when the condition
--- holds, so an action can write
---
---   local when = require("bgwf.preconditions")
---   return {
---     precondition = function(ctx) return when.time_reached(ctx.start_at) end,
---     execute = function(step, ctx) ... end,
---   }
---
--- A precondition runs in a process that the executor forks for each check,
--- under a time limit, so these helpers only look and never wait.
local M = {}

local function check_type(value, expected, what, level)
  if type(value) ~= expected then
    error(("%s must be a %s, not %s"):format(what, expected, type(value)), level + 1)
  end
end

--- Returns true once the clock has reached epoch_seconds (seconds since the
--- Unix epoch, as os.time() returns; fractions allowed).
function M.time_reached(epoch_seconds)
  check_type(epoch_seconds, "number", "time_reached: epoch_seconds", 2)
  return os.time() >= epoch_seconds
end

--- Returns true when path can be opened for reading, and, with
--- options.non_empty, when it also contains at least one byte.
function M.file_exists(path, options)
  check_type(path, "string", "file_exists: path", 2)
  if options ~= nil then
    check_type(options, "table", "file_exists: options", 2)
  end
  local file = io.open(path, "rb")
  if not file then
    return false
  end
  local size = file:seek("end")
  file:close()
  if options and options.non_empty then
    return (size or 0) > 0
  end
  return true
end

local function shell_quote(text)
  return "'" .. text:gsub("'", "'\\''") .. "'"
end

-- Returns the status of an execution as `bgwf status ID --json` of a new
-- process prints it. A process that an executor forked must not use SQLite
-- (the executor's connection was copied into it by fork), but a program it
-- starts has a clean copy of the library. The shell that io.popen starts
-- runs /proc/$PPID/exe, the program of this process: the bgwf binary or a
-- host program built with bgwf_main, and both have the status command.
local function status_from_new_process(execution_id, db)
  local command = ("\"/proc/$PPID/exe\" status %d --json --db %s 2>&1"):format(
    execution_id, shell_quote(db))
  local pipe = assert(io.popen(command))
  local output = pipe:read("a")
  local ok = pipe:close()
  if not ok then
    return nil, (output:gsub("^bgwf: ", ""):gsub("\n$", ""))
  end
  local report, message = require("bgwf.json").decode(output)
  if type(report) ~= "table" then
    return nil, "bgwf status printed invalid JSON: " .. tostring(message)
  end
  return report
end

--- Returns true when execution execution_id is COMPLETE. store is a handle
--- from bgwf.open, or the path of the database (default $BGWF_DB, else
--- ./bgwf.db in the working folder). In a precondition, which runs in a
--- process that the executor forked, pass the path: the check then runs
--- `bgwf status` in a new process. An execution that does not exist raises,
--- because it can never complete.
function M.execution_complete(execution_id, store)
  check_type(execution_id, "number", "execution_complete: execution_id", 2)
  local report, message
  if type(store) == "userdata" then
    report, message = store:status(execution_id)
  else
    if store ~= nil then
      check_type(store, "string", "execution_complete: store", 2)
    end
    local db = store or os.getenv("BGWF_DB") or "bgwf.db"
    local bgwf = require("bgwf")
    if bgwf.is_forked() then
      report, message = status_from_new_process(execution_id, db)
    else
      local handle <close>, failure = bgwf.open(db)
      if not handle then
        error("execution_complete: " .. failure, 2)
      end
      report, message = handle:status(execution_id)
    end
  end
  if not report then
    error("execution_complete: " .. message, 2)
  end
  return report.execution.status == "COMPLETE"
end

return M
