-- The built-in action exec: runs an argv list without a shell, streams its
-- output to the step's log and fails the step with an exact message.

local helper = require("helper")

-- A workflow with one exec step whose context is the submit context.
local ONE_STEP = [[
return function(wf, ctx)
  return { wf:step("command", "exec", ctx) }
end
]]

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Encode a flat context for --context: argv (list of strings) plus
-- optional scalar fields and an env table of strings.
local function context_json(ctx)
  local parts = {}
  local argv = {}
  for i, arg in ipairs(ctx.argv) do
    argv[i] = json_string(arg)
  end
  parts[#parts + 1] = '"argv": [' .. table.concat(argv, ", ") .. "]"
  if ctx.cwd then
    parts[#parts + 1] = '"cwd": ' .. json_string(ctx.cwd)
  end
  if ctx.timeout then
    parts[#parts + 1] = '"timeout": ' .. tostring(ctx.timeout)
  end
  if ctx.env then
    local env = {}
    for name, value in pairs(ctx.env) do
      env[#env + 1] = json_string(name) .. ": " .. json_string(value)
    end
    parts[#parts + 1] = '"env": {' .. table.concat(env, ", ") .. "}"
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- Run the one-step workflow with ctx under `bgwf run` and return the
-- result of the run and the step's status entry.
local function run_exec(project, ctx)
  local result = project:run({ "run", "exec_one", "--poll-ms", "50",
                               "--context", context_json(ctx) })
  local steps = helper.steps_by_token(assert(project:status()))
  return result, steps.command
end

-- The lines of the step's log (`bgwf logs 1 command`), without their
-- timestamps and without the header line of each try.
local function log_lines(project)
  local result = project:run({ "logs", "1", "command" })
  assert(result.code == 0, result.stderr)
  local lines = {}
  for line in result.stdout:gmatch("[^\n]+") do
    local text = line:match("^%d+%-%d+%-%d+ [%d:.]+ (.*)$")
    if text and not text:match("^== try %d+") then
      lines[#lines + 1] = text
    end
  end
  return lines
end

-- The first line of a stored error (the rest is the Lua traceback).
local function first_lines(text, count)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do
    if line:match("^stack traceback:") or #lines == count then
      break
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

describe("the exec action", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/exec_one.lua", ONE_STEP)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("with a command that succeeds", function()
    it("completes the step", function()
      local result, step = run_exec(project, { argv = { "true" } })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.equal("COMPLETED", step.status)
    end)

    it("sends stdout and stderr lines to the step log in order", function()
      local result = run_exec(project, {
        argv = { "sh", "-c", "echo one; echo two >&2; sleep 0.2; echo three" },
      })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.same({ "stdout: one", "stderr: two", "stdout: three" },
                      log_lines(project))
    end)

    it("passes arguments without a shell", function()
      local result = run_exec(project, { argv = { "printf", "%s|", "a b", "$HOME", "*" } })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.same({ "stdout: a b|$HOME|*|" }, log_lines(project))
    end)

    it("runs in cwd with env added", function()
      local folder = project:path("work")
      helper.shell("mkdir -p " .. helper.quote(folder))

      local result = run_exec(project, {
        argv = { "sh", "-c", "pwd; echo \"$BGWF_EXEC_SPEC\"" },
        cwd = folder,
        env = { BGWF_EXEC_SPEC = "added value" },
      })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.same({ "stdout: " .. folder, "stdout: added value" }, log_lines(project))
    end)
  end)

  describe("with a command that fails", function()
    it("reports a non-zero exit and the last stderr lines", function()
      local result, step = run_exec(project, {
        argv = { "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i >&2; done; exit 3" },
      })

      assert.are.equal(1, result.code)
      assert.are.equal("FAILED", step.status)
      assert.are.equal("exec: sh exited with status 3: line12\nlast 10 lines of stderr:\n"
                       .. "line3\nline4\nline5\nline6\nline7\nline8\nline9\nline10\nline11\nline12",
                       first_lines(step.error, 12))
    end)

    it("reports a single stderr line", function()
      local _, step = run_exec(project, { argv = { "sh", "-c", "echo broken >&2; exit 1" } })

      assert.are.equal("exec: sh exited with status 1: broken", first_lines(step.error, 2))
    end)

    it("reports a signal", function()
      local _, step = run_exec(project, { argv = { "sh", "-c", "kill -KILL $$" } })

      assert.are.equal("exec: sh was killed by signal SIGKILL (Killed) (stderr was empty)",
                       first_lines(step.error, 1))
    end)

    it("reports a missing binary", function()
      local _, step = run_exec(project, { argv = { "bgwf_no_such_command", "x" } })

      assert.are.equal("FAILED", step.status)
      assert.are.equal("exec: command not found: bgwf_no_such_command", first_lines(step.error, 1))
    end)

    it("reports a missing path", function()
      local _, step = run_exec(project, { argv = { "/nonexistent/bin/tool" } })

      assert.are.equal("exec: command not found: /nonexistent/bin/tool", first_lines(step.error, 1))
    end)

    it("reports permission denied", function()
      local script = project:write("not_executable.sh", "#!/bin/sh\necho hi\n")

      local _, step = run_exec(project, { argv = { script } })

      assert.are.equal("exec: permission denied: " .. script, first_lines(step.error, 1))
    end)

    it("reports a missing working folder", function()
      local _, step = run_exec(project, { argv = { "true" }, cwd = "/nonexistent/folder" })

      assert.are.equal("exec: cannot change to the working folder '/nonexistent/folder': "
                       .. "No such file or directory", first_lines(step.error, 1))
    end)

    it("reports a timeout", function()
      local _, step = run_exec(project, {
        argv = { "sh", "-c", "echo waiting >&2; exec sleep 600" },
        timeout = 0.5,
      })

      assert.are.equal("FAILED", step.status)
      assert.are.equal("exec: timed out after 0.5 s: sh: waiting", first_lines(step.error, 2))
    end)
  end)

  describe("with an invalid context", function()
    local cases = {
      { "{}", "exec: ctx.argv must be a non-empty list of strings" },
      { '{"argv": []}', "exec: ctx.argv must be a non-empty list of strings" },
      { '{"argv": ["true", {}]}', "exec: ctx.argv[2] must be a string, not table" },
      { '{"argv": ["true"], "timeout": 0}', "exec: ctx.timeout must be a number of seconds above 0" },
      { '{"argv": ["true"], "env": {"A": {}}}', "exec: ctx.env.A must be a string" },
    }
    for _, case in ipairs(cases) do
      it("fails the step for " .. case[1], function()
        project:run({ "run", "exec_one", "--poll-ms", "50", "--context", case[1] })

        local steps = helper.steps_by_token(assert(project:status()))
        assert.are.equal("FAILED", steps.command.status)
        assert.is_truthy(steps.command.error:find(case[2], 1, true), steps.command.error)
      end)
    end
  end)

  describe("with several MB of output", function()
    -- Peak resident memory (VmHWM) of a process, in kB.
    local function peak_kb(pid)
      local text = helper.read_file("/proc/" .. pid .. "/status") or ""
      return tonumber(text:match("VmHWM:%s*(%d+)"))
    end

    it("keeps the executor's memory flat and logs every line", function()
      local lines, width = 80000, 99
      local line = string.rep("x", width)
      project:write("workflows/loud.lua", ([[
return function(wf, ctx)
  local warm = wf:step("warm", "exec", { argv = { "sh", "-c", "echo warm" } })
  return { wf:step("command", "exec",
    { argv = { "sh", "-c", "yes %s | head -n %d" } }, { after = { warm }, cooldown = 0 }) }
end
]]):format(line, lines))
      local executor = project:start_executor("loud")
      local submitted = project:run({ "submit", "loud" })
      assert.are.equal(0, submitted.code, submitted.stderr)
      project:wait_for_step("warm", "COMPLETED")
      local before = assert(peak_kb(executor.pid))

      project:wait_for_step("command", "COMPLETED", { deadline = 120 })
      local after = assert(peak_kb(executor.pid))

      local logged = 0
      for _, text in ipairs(log_lines(project)) do
        if text == "stdout: " .. line then
          logged = logged + 1
        end
      end
      assert.are.equal(lines, logged)
      -- The output is 8 MB; the executor may grow by a fraction of that.
      assert.is_true(after - before < 4096,
                     ("VmHWM grew from %d kB to %d kB"):format(before, after))
    end)
  end)
end)
