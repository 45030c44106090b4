-- Support for the specs and the chaos test that kill things: process
-- sessions, pids that must disappear, ledgers of step starts and ends, and
-- `bgwf show --step --json`.
--
-- A ledger is a text file that steps append one line to per event. Each
-- line is written by one write(2) on a file opened with O_APPEND, so the
-- order of lines is the order of events and overlaps are computed from that
-- order, never from clocks.

local helper = require("helper")
local json = require("dkjson")

local robustness = {}

-- Read /proc/PID/stat and return { pid, state, ppid, pgrp, session }, or
-- nil when the process is gone.
function robustness.process_stat(pid)
  local text = helper.read_file("/proc/" .. tostring(pid) .. "/stat")
  if not text then
    return nil
  end
  -- The command name is in parentheses and may itself contain ") ", so the
  -- greedy match runs to the last closing parenthesis.
  local state, ppid, pgrp, session = text:match("^%d+ %(.*%) (%a) (%-?%d+) (%-?%d+) (%-?%d+)")
  if not state then
    return nil
  end
  return {
    pid = tonumber(pid),
    state = state,
    ppid = tonumber(ppid),
    pgrp = tonumber(pgrp),
    session = tonumber(session),
  }
end

-- Return the pids of the live processes (zombies excluded) in a session.
function robustness.session_members(session)
  local members = {}
  local pipe = io.popen("ls /proc 2>/dev/null")
  for name in pipe:lines() do
    if name:match("^%d+$") then
      local stat = robustness.process_stat(name)
      if stat and stat.session == session and stat.state ~= "Z" and stat.state ~= "X" then
        members[#members + 1] = stat.pid
      end
    end
  end
  pipe:close()
  return members
end

-- Send SIGKILL to every process of a session, one pid at a time, and to
-- each of their process groups. Project:start puts every bgwf process in a
-- session of its own (setsid), and bgwf gives each step a process group in
-- that session, so this reaches steps and their grandchildren too.
function robustness.kill_session(session)
  if not session or session <= 1 then
    return
  end
  for _ = 1, 3 do
    local members = robustness.session_members(session)
    if #members == 0 then
      return
    end
    for _, pid in ipairs(members) do
      local stat = robustness.process_stat(pid)
      if stat and stat.pgrp > 1 then
        helper.shell(("kill -KILL -%d 2>/dev/null"):format(stat.pgrp))
      end
      helper.shell(("kill -KILL %d 2>/dev/null"):format(pid))
    end
    helper.sleep(0.05)
  end
end

-- Kill every background process of the project together with the steps
-- and grandchildren in their sessions, then remove the project folder.
-- Extra pids (for example grandchildren that a test moved to a session of
-- their own) are killed too.
function robustness.cleanup(project, extra_pids)
  for _, process in ipairs(project.processes) do
    if process:exit_code() == nil then
      process:signal("KILL")
    end
    robustness.kill_session(process.group)
  end
  for _, pid in ipairs(extra_pids or {}) do
    helper.shell(("kill -KILL %d 2>/dev/null"):format(pid))
  end
  project:cleanup()
end

-- Wait until the process with this pid is gone (a zombie counts as gone).
-- Return true, or false when it is still alive after deadline_seconds.
function robustness.wait_pid_gone(pid, deadline_seconds)
  local ok = pcall(helper.wait_until, "pid " .. tostring(pid) .. " is gone",
    function() return not helper.process_alive(pid) end, deadline_seconds)
  return ok
end

-- Return the decoded `bgwf show ID --step TOKEN --json`, or raise with the
-- command's output.
function robustness.show_step(project, execution_id, token)
  local result = project:run({ "show", tostring(execution_id), "--step", token, "--json" })
  assert(result.code == 0, ("bgwf show --step %s exited %d: %s"):format(
    token, result.code, result.stderr))
  local decoded, _, problem = json.decode(result.stdout)
  assert(type(decoded) == "table" and type(decoded.step) == "table",
    ("bgwf show --step %s printed invalid JSON (%s): %s"):format(
      token, tostring(problem), result.stdout))
  return decoded.step
end

-- Submit an application and return the execution id it printed.
function robustness.submit(project, app, extra_args)
  local args = { "submit", app }
  for _, arg in ipairs(extra_args or {}) do
    args[#args + 1] = arg
  end
  local result = project:run(args)
  assert(result.code == 0, ("bgwf submit %s exited %d: %s"):format(app, result.code, result.stderr))
  local id = tonumber(result.stdout:match("execution (%d+)"))
  assert(id, "bgwf submit printed no execution id: " .. result.stdout)
  return id
end

------------------------------------------------------------------------------
-- Ledgers

-- Parse ledger lines of the form "EVENT key=value key=value ..." into
-- { event = EVENT, key = value, ... }. Numeric values become numbers.
function robustness.parse_ledger_line(line)
  local event, rest = line:match("^(%S+)%s*(.*)$")
  if not event then
    return nil
  end
  local record = { event = event, line = line }
  for key, value in rest:gmatch("([%w_]+)=(%S+)") do
    record[key] = tonumber(value) or value
  end
  return record
end

function robustness.read_ledger(path)
  local records = {}
  for _, line in ipairs(helper.read_lines(path)) do
    local record = robustness.parse_ledger_line(line)
    if record then
      records[#records + 1] = record
    end
  end
  return records
end

-- Return the maximum number of runs open at once in a ledger, where a run
-- opens at a "start" record and closes at the "end" record with the same
-- pid. Also return the number of starts and of ends.
function robustness.max_overlap(records)
  local open, count, peak = {}, 0, 0
  local starts, ends = 0, 0
  for _, record in ipairs(records) do
    if record.event == "start" then
      starts = starts + 1
      open[record.pid] = true
      count = count + 1
      if count > peak then
        peak = count
      end
    elseif record.event == "end" and open[record.pid] then
      ends = ends + 1
      open[record.pid] = nil
      count = count - 1
    end
  end
  return peak, starts, ends
end

------------------------------------------------------------------------------
-- Action sources

robustness.actions = {}

-- Append "start" and "end" lines to ctx.ledger around a sleep of
-- ctx.seconds (default 0.3). Each line carries the token, the try, the
-- step's pid and its executor's pid. The executor forks steps through a
-- spawner process of its own, so the executor is the step's grandparent.
robustness.actions.ledger_sleep = [[
local function append(path, line)
  local file = assert(io.open(path, "a"))
  file:write(line, "\n")
  file:close()
end

local function pid_and_parent(stat_path)
  local file = assert(io.open(stat_path))
  local stat = file:read("l")
  file:close()
  return stat:match("^(%d+) %(.*%) %a (%d+)")
end

return {
  execute = function(step, ctx)
    local pid, spawner = pid_and_parent("/proc/self/stat")
    local _, executor = pid_and_parent("/proc/" .. spawner .. "/stat")
    local fields = ("token=%s pid=%s executor_pid=%s try=%d"):format(
      step.token, pid, executor, step.try)
    append(ctx.ledger, "start " .. fields)
    os.execute("sleep " .. tostring(ctx.seconds or 0.3))
    append(ctx.ledger, "end " .. fields)
  end,
}
]]

return robustness
