-- The workflow builder and the step object, seen through the steps that
-- bgwf stores and runs: multi-step tokens and ordering, tails, string
-- `after`, and the fields and methods an action gets.

local helper = require("helper")

-- Set the status message to ctx.text.
local SHOW_ACTION = [[
return {
  execute = function(step, ctx)
    step:status(ctx.text)
  end,
}
]]

-- Run workflows/NAME.lua (written from `source`) with `bgwf run` and return
-- the final status. `args` are extra options for run.
local function run_workflow(project, name, source, args)
  project:write("workflows/" .. name .. ".lua", source)
  project:write("actions/show.lua", SHOW_ACTION)
  local command = { "run", name, "--poll-ms", "50" }
  for _, arg in ipairs(args or {}) do
    command[#command + 1] = arg
  end
  local result = project:run(command)
  assert.are.equal(0, result.code, result.stderr)
  return assert(project:status())
end

-- Assert that step `later` started after step `earlier` ended.
local function assert_ran_after(steps, later, earlier)
  assert.is_not_nil(steps[later], later .. " exists")
  assert.is_not_nil(steps[earlier], earlier .. " exists")
  assert.is_true(steps[later].started_at >= steps[earlier].ended_at,
    ("%s started at %s, before %s ended at %s"):format(
      later, tostring(steps[later].started_at), earlier, tostring(steps[earlier].ended_at)))
end

describe("a workflow", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("with nested multi-steps", function()
    it("joins tokens with double underscores", function()
      local status = run_workflow(project, "nested", [[
return function(wf, ctx)
  local outer = wf:multistep("outer", function(sub)
    local first = sub:step("first", "noop", {}, { cooldown = 0 })
    local inner = sub:multistep("inner", function(deeper)
      return { deeper:step("leaf", "noop", {}, { cooldown = 0 }) }
    end, { after = { first } })
    return { inner }
  end)
  return { wf:step("last", "noop", {}, { after = { outer }, cooldown = 0 }) }
end
]])

      assert.are.same({ "last", "outer__first", "outer__inner__leaf" }, helper.tokens(status))
      local steps = helper.steps_by_token(status)
      for token, step in pairs(steps) do
        assert.are.equal("COMPLETED", step.status, token .. " status")
      end
      assert_ran_after(steps, "outer__inner__leaf", "outer__first")
      assert_ran_after(steps, "last", "outer__inner__leaf")
    end)
  end)

  describe("with a step after a multi-step", function()
    it("waits for every tail", function()
      local status = run_workflow(project, "join", [[
return function(wf, ctx)
  local fan = wf:multistep("fan", function(sub)
    return {
      sub:step("left", "noop", {}, { cooldown = 0 }),
      sub:step("right", "noop", {}, { cooldown = 0 }),
    }
  end)
  return { wf:step("joined", "noop", {}, { after = { fan }, cooldown = 0 }) }
end
]])

      local steps = helper.steps_by_token(status)
      assert_ran_after(steps, "joined", "fan__left")
      assert_ran_after(steps, "joined", "fan__right")
    end)
  end)

  describe("with a multi-step after a step", function()
    it("starts its heads after that step", function()
      local status = run_workflow(project, "heads", [[
return function(wf, ctx)
  local gate = wf:step("gate", "noop", {}, { cooldown = 0 })
  return { wf:multistep("body", function(sub)
    return {
      sub:step("head_a", "noop", {}, { cooldown = 0 }),
      sub:step("head_b", "noop", {}, { cooldown = 0 }),
    }
  end, { after = { gate } }) }
end
]])

      local steps = helper.steps_by_token(status)
      assert_ran_after(steps, "body__head_a", "gate")
      assert_ran_after(steps, "body__head_b", "gate")
    end)
  end)

  describe("with a multi-step context", function()
    it("passes it to the builder function", function()
      local status = run_workflow(project, "multistep_context", [[
return function(wf, ctx)
  return { wf:multistep("part", { text = "from the multi-step" }, function(sub, mctx)
    return { sub:step("leaf", "show", { text = mctx.text }, { cooldown = 0 }) }
  end) }
end
]])

      local steps = helper.steps_by_token(status)
      assert.are.equal("from the multi-step", steps.part__leaf.message)
    end)
  end)

  describe("that returns its tails", function()
    it("leaves out unreachable steps", function()
      local status = run_workflow(project, "tails", [[
return function(wf, ctx)
  local head = wf:step("head", "noop", {}, { cooldown = 0 })
  wf:step("unreachable", "noop", {}, { cooldown = 0 })
  return { wf:step("tail", "noop", {}, { after = { head }, cooldown = 0 }) }
end
]])

      assert.are.same({ "head", "tail" }, helper.tokens(status))
    end)
  end)

  describe("that returns nil", function()
    it("includes every declared step", function()
      local status = run_workflow(project, "no_tails", [[
return function(wf, ctx)
  local head = wf:step("head", "noop", {}, { cooldown = 0 })
  wf:step("loose", "noop", {}, { cooldown = 0 })
  wf:step("tail", "noop", {}, { after = { head }, cooldown = 0 })
end
]])

      assert.are.same({ "head", "loose", "tail" }, helper.tokens(status))
    end)
  end)

  describe("with after naming a later step", function()
    it("orders the steps by it", function()
      local status = run_workflow(project, "forward_after", [[
return function(wf, ctx)
  wf:step("early", "noop", {}, { after = { "late" }, cooldown = 0 })
  wf:step("late", "noop", {}, { cooldown = 0.5 })
end
]])

      local steps = helper.steps_by_token(status)
      assert.are.equal("COMPLETED", steps.early.status)
      assert_ran_after(steps, "early", "late")
    end)
  end)
end)

describe("the step object", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  it("carries token, app, scope and ids", function()
    project:write("actions/describe_step.lua", [[
return {
  execute = function(step, ctx)
    step:status(table.concat({ step.token, step.app, step.scope,
      math.type(step.execution), math.type(step.attempt), step.try }, "|"))
  end,
}
]])
    local status = run_workflow(project, "fields", [[
return function(wf, ctx)
  return { wf:step("probe", "describe_step", {}) }
end
]], { "--scope", "s1" })

    local steps = helper.steps_by_token(status)
    assert.are.equal("probe|fields|s1|integer|integer|1", steps.probe.message)
  end)

  it("sends status messages while it runs", function()
    project:write("workflows/progress.lua", [[
return function(wf, ctx)
  return { wf:step("busy", "report_progress", {}) }
end
]])
    project:write("actions/report_progress.lua", [[
return {
  execute = function(step, ctx)
    step:status("halfway")
    local give_up_at = os.time() + 120
    while not io.open("@DIR@/release") do
      if os.time() > give_up_at then
        error("the release file never appeared")
      end
      os.execute("sleep 0.05")
    end
    step:status("done")
  end,
}
]])
    assert.are.equal(0, project:run({ "submit", "progress" }).code)
    project:start_executor("progress")

    local running = project:wait_for_status("busy shows halfway while it runs",
      function(_, steps)
        return steps.busy and steps.busy.message == "halfway"
      end)
    assert.are.equal("RUNNING", helper.steps_by_token(running).busy.status)
    project:write("release", "")
    local finished = project:wait_for_step("busy", "COMPLETED")
    assert.are.equal("done", helper.steps_by_token(finished).busy.message)
  end)

  it("logs to the step's own log", function()
    project:write("workflows/chatty.lua", [[
return function(wf, ctx)
  return { wf:step("talker", "talk", {}) }
end
]])
    project:write("actions/talk.lua", [[
return {
  execute = function(step, ctx)
    step:log("a line from step " .. step.token)
  end,
}
]])
    assert.are.equal(0, project:run({ "submit", "chatty" }).code)

    local executor = project:start_executor("chatty", { "--exit-when-idle" })

    assert.are.equal(0, executor:wait())
    local logs = project:run({ "logs", "1", "talker" })
    assert.are.equal(0, logs.code, logs.stderr)
    assert.is_truthy(logs.stdout:find("a line from step talker", 1, true), logs.stdout)
    local executor_log = executor:stderr()
    assert.is_nil(executor_log:find("a line from step talker", 1, true), executor_log)
  end)
end)
