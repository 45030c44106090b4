-- The example workflow "simple": one step, a multi-step of two, and a step
-- gated by a precondition, run end to end by the real binary.

local helper = require("helper")

local SIMPLE_WORKFLOW = [[
return function(wf, ctx)
  local first = wf:step("action1", "test_action", { message = ctx.message or "hi" })
  local middle = wf:multistep("action2", function(sub, mctx)
    local a = sub:step("sub1", "noop", {})
    return { sub:step("sub2", "noop", {}, { after = { a }, cooldown = 0 }) }
  end, { after = { first } })
  return { wf:step("action3", "block_until", { until_epoch = os.time() + 1 },
                   { after = { middle }, cooldown = 1 }) }
end
]]

local TEST_ACTION = [[
return {
  execute = function(step, ctx)
    step:status(ctx.message)
  end,
}
]]

local BLOCK_UNTIL = [[
return {
  precondition = function(ctx) return os.time() >= ctx.until_epoch end,
  execute = function(step, ctx)
    step:status("waited until " .. ctx.until_epoch)
  end,
}
]]

local ALL_TOKENS = { "action1", "action2__sub1", "action2__sub2", "action3" }

local function write_simple(project)
  project:write("workflows/simple.lua", SIMPLE_WORKFLOW)
  project:write("actions/test_action.lua", TEST_ACTION)
  project:write("actions/block_until.lua", BLOCK_UNTIL)
end

-- Assert that every step of the simple workflow completed.
local function assert_all_completed(status)
  assert.are.same(ALL_TOKENS, helper.tokens(status))
  local steps = helper.steps_by_token(status)
  for _, token in ipairs(ALL_TOKENS) do
    assert.are.equal("COMPLETED", steps[token].status, token .. " status")
  end
end

describe("bgwf run", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_simple(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("on the simple workflow", function()
    it("exits 0", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })

      assert.are.equal(0, result.code, result.stderr)
    end)

    it("completes every step", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })
      assert.are.equal(0, result.code, result.stderr)

      local status = assert(project:status())
      assert_all_completed(status)
    end)

    it("finishes the attempt and the execution", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })
      assert.are.equal(0, result.code, result.stderr)

      local status = assert(project:status())
      assert.are.equal("simple", status.execution.app)
      assert.is_nil(status.execution.scope)
      assert.are.equal("COMPLETE", status.execution.status)
      assert.are.equal("FINISHED", status.attempt.status)
    end)

    it("shows the status message of action1", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })
      assert.are.equal(0, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("hi", steps.action1.message)
      assert.are.equal("test_action", steps.action1.action)
    end)

    it("records try, executor and times", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })
      assert.are.equal(0, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      for _, token in ipairs(ALL_TOKENS) do
        local step = steps[token]
        assert.are.equal(1, step.try, token .. " try")
        assert.is_not_nil(step.executor, token .. " executor")
        assert.are.equal("number", type(step.started_at), token .. " started_at")
        assert.are.equal("number", type(step.ended_at), token .. " ended_at")
        assert.is_true(step.started_at <= step.ended_at, token .. " started before it ended")
      end
    end)

    it("runs steps in dependency order", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50" })
      assert.are.equal(0, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.is_true(steps.action1.ended_at <= steps.action2__sub1.started_at,
        "action2__sub1 started after action1 ended")
      assert.is_true(steps.action2__sub1.ended_at <= steps.action2__sub2.started_at,
        "action2__sub2 started after action2__sub1 ended")
      assert.is_true(steps.action2__sub2.ended_at <= steps.action3.started_at,
        "action3 started after action2__sub2 ended")
    end)
  end)

  describe("with --scope and --context", function()
    it("stores the scope and passes the context", function()
      local result = project:run({ "run", "simple", "--poll-ms", "50",
        "--scope", "2024-01-01", "--context", '{"message":"from the command line"}' })
      assert.are.equal(0, result.code, result.stderr)

      local status = assert(project:status())
      assert.are.equal("2024-01-01", status.execution.scope)
      local steps = helper.steps_by_token(status)
      assert.are.equal("from the command line", steps.action1.message)
    end)

    it("reads the context from @FILE", function()
      project:write("context.json", '{"message":"from a file"}')

      local result = project:run({ "run", "simple", "--poll-ms", "50",
        "--context", "@" .. project:path("context.json") })
      assert.are.equal(0, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("from a file", steps.action1.message)
    end)
  end)
end)

describe("bgwf submit", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_simple(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("on the simple workflow", function()
    it("prints the execution, attempt and step count", function()
      local result = project:run({ "submit", "simple" })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.equal("submitted simple: execution 1, attempt 1, 4 steps",
        (result.stdout:gsub("\n$", "")))
    end)

    it("stores every step as WAITING", function()
      local result = project:run({ "submit", "simple" })
      assert.are.equal(0, result.code, result.stderr)

      local status = assert(project:status())
      assert.are.same(ALL_TOKENS, helper.tokens(status))
      for _, step in ipairs(status.steps) do
        assert.are.equal("WAITING", step.status, step.token .. " status")
      end
      assert.are.equal("RUNNING", status.attempt.status)
      assert.are.equal("INCOMPLETE", status.execution.status)
    end)
  end)

  describe("then an executor with --exit-when-idle", function()
    it("completes every step and exits 0", function()
      local submitted = project:run({ "submit", "simple" })
      assert.are.equal(0, submitted.code, submitted.stderr)

      local executor = project:start_executor("simple", { "--exit-when-idle" })

      assert.are.equal(0, executor:wait(120))
      local status = assert(project:status())
      assert_all_completed(status)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETE", status.execution.status)
      assert.are.equal("hi", helper.steps_by_token(status).action1.message)
    end)
  end)

  describe("while an attempt of the same app and scope runs", function()
    it("fails and names the running attempt", function()
      local first = project:run({ "submit", "simple" })
      assert.are.equal(0, first.code, first.stderr)
      local attempt = first.stdout:match("attempt (%d+)")
      assert.is_not_nil(attempt, first.stdout)

      local second = project:run({ "submit", "simple" })

      assert.are.equal(1, second.code)
      assert.are.equal("bgwf: ", second.stderr:sub(1, 6))
      assert.is_truthy(second.stderr:find("attempt " .. attempt, 1, true), second.stderr)
      assert.are.equal(1, project:count_rows("executions"))
      assert.are.equal(1, project:count_rows("attempts"))
      assert.are.equal(4, project:count_rows("steps"))
    end)

    it("accepts another scope", function()
      local first = project:run({ "submit", "simple", "--scope", "a" })
      assert.are.equal(0, first.code, first.stderr)

      local second = project:run({ "submit", "simple", "--scope", "b" })

      assert.are.equal(0, second.code, second.stderr)
      assert.are.equal(2, project:count_rows("executions"))
    end)
  end)
end)

describe("bgwf status", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_simple(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  it("prints one line per step", function()
    local result = project:run({ "run", "simple", "--poll-ms", "50" })
    assert.are.equal(0, result.code, result.stderr)

    local status = project:run({ "status" })

    assert.are.equal(0, status.code, status.stderr)
    for _, token in ipairs(ALL_TOKENS) do
      local line
      for candidate in status.stdout:gmatch("[^\n]+") do
        if candidate:find(token, 1, true) then
          line = candidate
        end
      end
      assert.is_not_nil(line, token .. " has a line in:\n" .. status.stdout)
      assert.is_truthy(line:find("COMPLETED", 1, true), line)
    end
  end)

  it("shows an execution by id", function()
    assert.are.equal(0, project:run({ "submit", "simple", "--scope", "a" }).code)
    assert.are.equal(0, project:run({ "submit", "simple", "--scope", "b" }).code)

    local first = assert(project:status(1))
    local latest = assert(project:status())

    assert.are.equal(1, first.execution.id)
    assert.are.equal("a", first.execution.scope)
    assert.are.equal(2, latest.execution.id)
    assert.are.equal("b", latest.execution.scope)
  end)

  it("fails on an unknown execution id", function()
    assert.are.equal(0, project:run({ "submit", "simple" }).code)

    local result = project:run({ "status", "999" })

    assert.are.equal(1, result.code)
    assert.are.equal("bgwf: ", result.stderr:sub(1, 6))
    assert.is_truthy(result.stderr:find("999", 1, true), result.stderr)
  end)
end)
