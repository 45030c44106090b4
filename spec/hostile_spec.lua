-- A catalogue of hostile workflows and actions. Each case expects a clear
-- error or a FAILED step, never a crash or hang of the executor, and after
-- each case the same executor still runs a step of another workflow.

local helper = require("helper")
local robustness = require("robustness_helper")

local ONE_NOOP_WORKFLOW = [[
return function(wf, ctx)
  wf:step("only", "noop", {})
end
]]

-- Start an executor for `app` and the follow-up workflow.
local function start_executor(project, app, extra_args)
  local args = { "--kill-grace-ms", "500" }
  for _, arg in ipairs(extra_args or {}) do
    args[#args + 1] = arg
  end
  return project:start_executor(app .. ",followup", args)
end

-- Check that the executor is alive and still runs a new step to the end.
local function assert_executor_still_works(project, executor)
  assert.is_true(executor:running(), executor:describe())
  local execution = robustness.submit(project, "followup")
  project:wait_for_step("only", "COMPLETED", { execution = execution })
  assert.is_true(executor:running(), executor:describe())
end

-- Run one step of `app` and wait until `token` is COMPLETED or FAILED.
-- Return the step from `status --json`.
local function run_until_step_ends(project, app, token, deadline)
  local execution = robustness.submit(project, app)
  local status = project:wait_for_status("step " .. token .. " is COMPLETED or FAILED",
    function(_, steps)
      local step = steps[token]
      return step and (step.status == "COMPLETED" or step.status == "FAILED")
    end, { execution = execution, deadline = deadline })
  return helper.steps_by_token(status)[token], execution
end

describe("hostile input", function()
  local project
  local extra_pids

  before_each(function()
    project = helper.new_project()
    project:write("workflows/followup.lua", ONE_NOOP_WORKFLOW)
    extra_pids = {}
  end)

  after_each(function()
    robustness.cleanup(project, extra_pids)
  end)

  it("runs a step with a 20 MB context", function()
    project:write("workflows/huge.lua", [[
return function(wf, ctx)
  wf:step("huge", "measure", { blob = string.rep("x", 20 * 1024 * 1024) })
end
]])
    project:write("actions/measure.lua", [[
return {
  execute = function(step, ctx)
    step:status("received " .. #ctx.blob .. " bytes")
  end,
}
]])
    local executor = start_executor(project, "huge")

    local step = run_until_step_ends(project, "huge", "huge", 120)

    assert.are.equal("COMPLETED", step.status, step.error)
    assert.are.equal("received 20971520 bytes", step.message)
    assert_executor_still_works(project, executor)
  end)

  it("fails a precondition that recurses deeply in Lua", function()
    project:write("workflows/deep.lua", [[
return function(wf, ctx)
  wf:step("deep", "deep", {}, { cooldown = 0 })
end
]])
    project:write("actions/deep.lua", [[
local function depth(n)
  return 1 + depth(n + 1)
end

return {
  precondition = function(ctx) return depth(1) > 0 end,
  execute = function(step, ctx) end,
}
]])
    local executor = start_executor(project, "deep")

    local step = run_until_step_ends(project, "deep", "deep")

    assert.are.equal("FAILED", step.status)
    assert.is_truthy((step.error or ""):find("stack overflow", 1, true), step.error)
    assert_executor_still_works(project, executor)
  end)

  it("fails a precondition that recurses through C calls", function()
    project:write("workflows/deep_c.lua", [[
return function(wf, ctx)
  wf:step("deep_c", "deep_c", {}, { cooldown = 0 })
end
]])
    -- Every level goes through string.gsub, a C function, so the C stack
    -- limit of Lua is hit instead of the Lua stack limit.
    project:write("actions/deep_c.lua", [[
local function nest(text)
  return (string.gsub(text, "x", nest))
end

return {
  precondition = function(ctx) return nest("x") ~= nil end,
  execute = function(step, ctx) end,
}
]])
    local executor = start_executor(project, "deep_c")

    local step = run_until_step_ends(project, "deep_c", "deep_c")

    assert.are.equal("FAILED", step.status)
    assert.is_truthy((step.error or ""):find("stack overflow", 1, true), step.error)
    assert_executor_still_works(project, executor)
  end)

  it("fails a string.rep memory blow-up under max_memory", function()
    project:write("workflows/blowup.lua", [[
return function(wf, ctx)
  wf:step("blowup", "blowup", {}, { max_memory = 64 * 1024 * 1024 })
end
]])
    project:write("actions/blowup.lua", [[
return {
  execute = function(step, ctx)
    local text = string.rep("x", 1024 * 1024 * 1024)
    step:status("built " .. #text .. " bytes")
  end,
}
]])
    local executor = start_executor(project, "blowup")

    local step = run_until_step_ends(project, "blowup", "blowup")

    assert.are.equal("FAILED", step.status)
    local message = step.error or ""
    assert.is_truthy(message:find("not enough memory", 1, true), message)
    assert.is_truthy(message:find("max_memory of 67108864 bytes", 1, true), message)
    assert_executor_still_works(project, executor)
  end)

  it("kills a grandchild left running by a finished step", function()
    project:write("workflows/leaver.lua", [[
return function(wf, ctx)
  wf:step("leaver", "leaver", { pid_file = "@DIR@/grandchild.pid" })
end
]])
    project:write("actions/leaver.lua", [[
return {
  execute = function(step, ctx)
    os.execute("sleep 300 & echo $! > " .. ctx.pid_file)
    step:status("left a grandchild behind")
  end,
}
]])
    local executor = start_executor(project, "leaver")

    local step = run_until_step_ends(project, "leaver", "leaver")

    assert.are.equal("COMPLETED", step.status, step.error)
    local grandchild = tonumber((project:read("grandchild.pid") or ""):match("%d+"))
    assert.is_number(grandchild, "the step wrote no grandchild pid")
    extra_pids[#extra_pids + 1] = grandchild
    assert.is_true(robustness.wait_pid_gone(grandchild, 30),
      "the grandchild sleep (pid " .. grandchild .. ") outlived its step")
    assert_executor_still_works(project, executor)
  end)

  it("ends a step that opens and closes its report pipe", function()
    project:write("workflows/pipe_closer.lua", [[
return function(wf, ctx)
  wf:step("pipe_closer", "pipe_closer", {})
end
]])
    -- The report pipe is file descriptor 3 of the step's process. Opening
    -- /dev/fd/3 makes a second descriptor of the same pipe, so closing it
    -- leaves descriptor 3 itself open.
    project:write("actions/pipe_closer.lua", [[
return {
  execute = function(step, ctx)
    local pipe = assert(io.open("/dev/fd/3", "w"))
    pipe:close()
    step:status("still reporting after the close")
  end,
}
]])
    local executor = start_executor(project, "pipe_closer")

    local step = run_until_step_ends(project, "pipe_closer", "pipe_closer")

    assert.are.equal("COMPLETED", step.status, step.error)
    assert.are.equal("still reporting after the close", step.message)
    assert_executor_still_works(project, executor)
  end)

  it("fails a step that writes garbage to its report pipe", function()
    project:write("workflows/pipe_garbage.lua", [[
return function(wf, ctx)
  wf:step("pipe_garbage", "pipe_garbage", {})
end
]])
    project:write("actions/pipe_garbage.lua", [[
return {
  execute = function(step, ctx)
    local pipe = assert(io.open("/dev/fd/3", "w"))
    pipe:write("this is not a report frame\n\255\254\0\0\0\0")
    pipe:close()
  end,
}
]])
    local executor = start_executor(project, "pipe_garbage")

    local step = run_until_step_ends(project, "pipe_garbage", "pipe_garbage")

    assert.are.equal("FAILED", step.status)
    -- The executor logs "sent bytes that are not a report frame"; the
    -- stored error should give that reason rather than guess at os.exit.
    local message = step.error or ""
    assert.is_truthy(message:find("report", 1, true), message)
    assert_executor_still_works(project, executor)
  end)

  describe("status messages", function()
    before_each(function()
      project:write("workflows/binary.lua", [[
return function(wf, ctx)
  wf:step("binary", "binary", {})
end
]])
      project:write("actions/binary.lua", [[
return {
  execute = function(step, ctx)
    step:status("invalid \255\254 bytes, an overlong \192\128, a NUL \0 and the rest")
  end,
}
]])
    end)

    it("with invalid UTF-8 keep status --json valid", function()
      local executor = start_executor(project, "binary")
      local step, execution = run_until_step_ends(project, "binary", "binary")

      assert.are.equal("COMPLETED", step.status, step.error)
      local result = project:run({ "status", "--json", tostring(execution) })
      assert.are.equal(0, result.code, result.stderr)
      assert.is_number(utf8.len(result.stdout), "status --json printed invalid UTF-8")
      assert.is_truthy(step.message:find("invalid ", 1, true), step.message)
      assert.is_truthy(step.message:find(" bytes", 1, true), step.message)
      local text = project:run({ "status", tostring(execution) })
      assert.are.equal(0, text.code, text.stderr)
      assert_executor_still_works(project, executor)
    end)

    it("keep the text after a NUL byte", function()
      local executor = start_executor(project, "binary")
      local step = run_until_step_ends(project, "binary", "binary")

      assert.are.equal("COMPLETED", step.status, step.error)
      assert.is_truthy(step.message:find("and the rest", 1, true),
        "the status message was cut: " .. step.message)
      assert_executor_still_works(project, executor)
    end)
  end)

  describe("a step token", function()
    local cases = {
      { name = "with invalid UTF-8", token = "\255\254" },
      { name = "with an overlong encoding", token = "a\192\128" },
      { name = "with a NUL byte", token = "a\0b" },
      { name = "with non-ASCII letters", token = "caf\195\169" },
    }

    for _, case in ipairs(cases) do
      it(case.name .. " is rejected at submit", function()
        project:write("workflows/bad_token.lua", ([[
return function(wf, ctx)
  wf:step(%q, "noop", {})
end
]]):format(case.token))

        local result = project:run({ "submit", "bad_token" })

        assert.are.equal(1, result.code, result.stdout .. result.stderr)
        assert.is_truthy(result.stderr:find("invalid step token", 1, true), result.stderr)
        assert.is_truthy(result.stderr:find("use letters, digits and '_'", 1, true),
          "the error lacks its hint: " .. result.stderr)
        assert.are.equal(0, project:stored_rows())
      end)
    end
  end)

  it("rejects a workflow that builds forever", function()
    project:write("workflows/endless.lua", [[
return function(wf, ctx)
  while true do end
end
]])
    -- 20 s bounds this case so the suite cannot hang: exit code 124 would
    -- mean timeout(1) stopped submit before its own --build-timeout did.
    local saved = helper.COMMAND_TIMEOUT
    helper.COMMAND_TIMEOUT = 20
    local ok, result = pcall(project.run, project, { "submit", "endless", "--build-timeout", "2" })
    helper.COMMAND_TIMEOUT = saved
    assert(ok, result)

    assert.are_not.equal(124, result.code, "submit was still building after 20 s")
    assert.are.equal(1, result.code, result.stderr)
    assert.is_truthy(result.stderr:find("took longer than its limit of 2 s", 1, true),
      result.stderr)
    assert.are.equal(0, project:stored_rows())
  end)

  it("runs a fan-out of 100,000 steps", function()
    local count = 100000
    project:write("workflows/fan_out.lua", [[
return function(wf, ctx)
  for i = 1, ctx.count do
    wf:step("s" .. i, "noop", {})
  end
end
]])
    local started = helper.now()
    local execution = robustness.submit(project, "fan_out",
      { "--context", ('{"count": %d}'):format(count) })
    local submitted = helper.now()
    local executor = start_executor(project, "fan_out",
      { "--max-concurrent", "16", "--log-level", "warn" })

    local saved = helper.COMMAND_TIMEOUT
    helper.COMMAND_TIMEOUT = 1200
    local ok, result = pcall(project.run, project,
      { "wait", tostring(execution), "--timeout", "1100", "--poll-ms", "1000" })
    helper.COMMAND_TIMEOUT = saved
    assert(ok, result)
    local finished = helper.now()

    assert.are.equal(0, result.code, result.stdout .. result.stderr .. executor:describe())
    local completed = project:query_number("SELECT count(*) FROM steps WHERE status = 'COMPLETED'")
    assert.are.equal(count, completed)
    io.stderr:write(("\n%d-step fan-out: submit %.1f s, run %.1f s\n"):format(
      count, submitted - started, finished - submitted))
    assert_executor_still_works(project, executor)
  end)
end)
