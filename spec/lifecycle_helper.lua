-- Test support for the lifecycle, operator and view specs: action sources
-- that leave traces in files, JSON output of bgwf commands, snapshots for
-- "changes nothing" checks, and two submits started at the same instant.
--
-- It builds on spec/helper.lua and adds no state of its own.

local json = require("dkjson")
local helper = require("helper")

local lifecycle = {}

------------------------------------------------------------------------------
-- Action sources

lifecycle.actions = {}

-- Append the step token to the file ctx.counter, one line per run.
lifecycle.actions.count = [[
return {
  execute = function(step, ctx)
    local file = assert(io.open(ctx.counter, "a"))
    file:write(step.token, "\n")
    file:close()
  end,
}
]]

-- Append the step token to ctx.counter, then fail unless the file ctx.flag
-- exists. Creating the flag file fixes the cause of the failure.
lifecycle.actions.needs_flag = [[
return {
  execute = function(step, ctx)
    local file = assert(io.open(ctx.counter, "a"))
    file:write(step.token, "\n")
    file:close()
    local flag = io.open(ctx.flag, "r")
    if not flag then
      error("the flag file " .. ctx.flag .. " is missing")
    end
    flag:close()
  end,
}
]]

-- Write ctx.started (containing the step's pid), then sleep ctx.seconds in
-- a shell, then append the step token to ctx.counter.
lifecycle.actions.nap = [[
return {
  execute = function(step, ctx)
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local started = assert(io.open(ctx.started, "w"))
    started:write(pid, "\n")
    started:close()
    os.execute("sleep " .. tostring(ctx.seconds))
    local file = assert(io.open(ctx.counter, "a"))
    file:write(step.token, "\n")
    file:close()
  end,
}
]]

-- A precondition that is always false, so the step never starts. An
-- operator may complete it by hand, and then execute must not run either.
lifecycle.actions.never = [[
return {
  precondition = function(ctx) return false end,
  execute = function(step, ctx)
    local file = assert(io.open(ctx.counter, "a"))
    file:write(step.token, "\n")
    file:close()
  end,
}
]]

------------------------------------------------------------------------------
-- Counting runs

-- Return how many lines of the project file `relative` equal `token`.
function lifecycle.count_runs(project, relative, token)
  local runs = 0
  for _, line in ipairs(project:lines(relative)) do
    if line == token then
      runs = runs + 1
    end
  end
  return runs
end

------------------------------------------------------------------------------
-- Commands

-- The value that run_json puts where the JSON text has null, so that a key
-- with a null value stays present in the decoded table.
lifecycle.null = json.null

-- Run a bgwf command that prints JSON, and return the decoded value and the
-- raw result. Fails the test when the command exits non-zero or prints
-- something that is not JSON.
function lifecycle.run_json(project, args, opts)
  local result = project:run(args, opts)
  assert(result.code == 0, ("%s exited %d: %s"):format(
    result.command, result.code, result.stderr))
  local decoded, _, problem = json.decode(result.stdout, 1, json.null)
  assert(type(decoded) == "table", ("%s printed invalid JSON (%s): %s"):format(
    result.command, tostring(problem), result.stdout))
  return decoded, result
end

-- Return a text that captures the stored state of an execution: the stdout
-- of `bgwf show ID --json` and `bgwf list --json`, and the number of stored
-- rows. Two equal snapshots mean a command changed nothing visible. Take
-- them only while no executor runs, because a running step changes them.
function lifecycle.snapshot(project, execution_id)
  local show = project:run({ "show", tostring(execution_id), "--json" })
  local list = project:run({ "list", "--json", "--limit", "0" })
  return table.concat({
    "show exit " .. show.code .. ": " .. show.stdout .. show.stderr,
    "list exit " .. list.code .. ": " .. list.stdout .. list.stderr,
    "stored rows: " .. project:stored_rows(),
  }, "\n")
end

-- Submit and run the application with an executor that exits once idle.
-- Return the decoded status of the newest execution afterwards.
function lifecycle.submit_and_drain(project, app, submit_args)
  local args = { "submit", app }
  for _, arg in ipairs(submit_args or {}) do
    args[#args + 1] = arg
  end
  local submitted = project:run(args)
  assert(submitted.code == 0, ("%s exited %d: %s"):format(
    submitted.command, submitted.code, submitted.stderr))
  local executor = project:start_executor(app, { "--exit-when-idle" })
  local code = executor:wait(120)
  assert(code == 0, ("the executor exited %d\n%s"):format(code, executor:describe()))
  return assert(project:status()), submitted
end

-- Start two `bgwf submit ARGS` processes from one shell at the same instant
-- and wait for both. Return a list of two { code, stdout, stderr } tables.
function lifecycle.submit_twice_at_once(project, args, round)
  local prefix = ("%s/race%d"):format(project.scratch, round)
  local quoted = {}
  for i, arg in ipairs(args) do
    quoted[i] = helper.quote(arg)
  end
  local parts = {}
  for i = 1, 2 do
    local out = ("%s.%d"):format(prefix, i)
    parts[i] = ("{ %s %s %s >%s.out 2>%s.err </dev/null; echo $? >%s.rc; } &"):format(
      project:env_prefix(), helper.quote(helper.bin), table.concat(quoted, " "),
      out, out, out)
  end
  local script = parts[1] .. " " .. parts[2] .. " wait"
  helper.shell(("cd %s && timeout -k 10 %d sh -c %s"):format(
    helper.quote(project.dir), helper.COMMAND_TIMEOUT, helper.quote(script)))

  local results = {}
  for i = 1, 2 do
    local out = ("%s.%d"):format(prefix, i)
    results[i] = {
      code = tonumber((helper.read_file(out .. ".rc") or ""):match("%d+")),
      stdout = helper.read_file(out .. ".out") or "",
      stderr = helper.read_file(out .. ".err") or "",
    }
  end
  return results
end

return lifecycle
