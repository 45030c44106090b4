-- A step that raises an error fails its attempt: steps before it stay
-- COMPLETED and steps after it never start.

local helper = require("helper")

local CHAIN_WORKFLOW = [[
return function(wf, ctx)
  local first = wf:step("first", "noop", {})
  local middle = wf:step("middle", "fail", { message = "middle step broke" },
                         { after = { first } })
  return { wf:step("last", "noop", {}, { after = { middle } }) }
end
]]

describe("a failing middle step", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/chain.lua", CHAIN_WORKFLOW)
    project:write("actions/fail.lua", helper.actions.fail)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("under bgwf run", function()
    it("makes run exit 1", function()
      local result = project:run({ "run", "chain", "--poll-ms", "50" })

      assert.are.equal(1, result.code, result.stderr)
    end)

    it("fails only that step", function()
      local result = project:run({ "run", "chain", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("FAILED", steps.middle.status)
      assert.are.equal("WAITING", steps.last.status)
    end)

    it("stores the error", function()
      local result = project:run({ "run", "chain", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      local message = steps.middle.error or ""
      assert.is_truthy(message:find("middle step broke", 1, true), message)
      assert.is_truthy(message:find("fail.lua:", 1, true), message)
    end)

    it("fails the attempt", function()
      local result = project:run({ "run", "chain", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local status = assert(project:status())
      assert.are.equal("FAILED", status.attempt.status)
      assert.are.equal("INCOMPLETE", status.execution.status)
    end)
  end)

  describe("under an executor with --exit-when-idle", function()
    it("fails the attempt and exits 0", function()
      local submitted = project:run({ "submit", "chain" })
      assert.are.equal(0, submitted.code, submitted.stderr)

      local executor = project:start_executor("chain", { "--exit-when-idle" })

      assert.are.equal(0, executor:wait(120))
      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FAILED", status.attempt.status)
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("FAILED", steps.middle.status)
      assert.are.equal("WAITING", steps.last.status)
    end)
  end)

  describe("fixed and submitted again", function()
    it("skips the completed step", function()
      local failed = project:run({ "run", "chain", "--poll-ms", "50" })
      assert.are.equal(1, failed.code, failed.stderr)
      project:write("actions/fail.lua", "return { execute = function(step, ctx) end }\n")

      local fixed = project:run({ "run", "chain", "--poll-ms", "50" })

      assert.are.equal(0, fixed.code, fixed.stderr)
      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal(1, status.execution.id)
      assert.are.equal(2, status.attempt.id)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETE", status.execution.status)
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.last.status)
    end)
  end)
end)
