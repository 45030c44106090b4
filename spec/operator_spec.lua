-- The operator commands revert, complete, shutdown and cancel: what each
-- changes, the lines it prints, and how it rejects an operation the state
-- does not allow without changing anything.

local helper = require("helper")
local lifecycle = require("lifecycle_helper")

-- first -> middle -> last. "middle" fails until the file "flag" exists.
-- Every step appends its token to the file "counter" each time it runs.
local CHAIN_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter", flag = "@DIR@/flag" }
  local first = wf:step("first", "count", files)
  local middle = wf:step("middle", "needs_flag", files, { after = { first } })
  return { wf:step("last", "count", files, { after = { middle } }) }
end
]]

-- "gate" never passes its precondition, and "opened" runs after it.
local GATED_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter" }
  local gate = wf:step("gate", "never", files, { cooldown = 0.1 })
  return { wf:step("opened", "count", files, { after = { gate } }) }
end
]]

-- "slow" runs until the file "release" exists, and "next" runs after it.
local HANDOFF_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter" }
  local slow = wf:step("slow", "wait_for_release", {
    started = "@DIR@/started", release = "@DIR@/release", finished = "@DIR@/finished",
  })
  return { wf:step("next", "count", files, { after = { slow } }) }
end
]]

-- "nap" sleeps 30 s in a shell, and "after_nap" runs after it.
local SLEEPY_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter" }
  local nap = wf:step("nap", "nap", { started = "@DIR@/started", seconds = 30,
                                      counter = "@DIR@/counter" })
  return { wf:step("after_nap", "count", files, { after = { nap } }) }
end
]]

local function write_chain(project)
  project:write("workflows/chain.lua", CHAIN_WORKFLOW)
  project:write("actions/count.lua", lifecycle.actions.count)
  project:write("actions/needs_flag.lua", lifecycle.actions.needs_flag)
end

-- Run the chain with the flag file present, so that execution 1 is COMPLETE.
local function complete_chain(project)
  write_chain(project)
  project:write("flag", "")
  local status = lifecycle.submit_and_drain(project, "chain")
  assert.are.equal("COMPLETE", status.execution.status)
  return status
end

-- Run the chain without the flag file, so that attempt 1 FAILED at "middle".
local function fail_chain(project)
  write_chain(project)
  local status = lifecycle.submit_and_drain(project, "chain")
  assert.are.equal("FAILED", status.attempt.status)
  return status
end

local function assert_prints_line(result, line)
  assert.is_truthy(result.stdout:find(line .. "\n", 1, true),
    ("expected the line %q in the stdout of %s:\n%s%s"):format(
      line, result.command, result.stdout, result.stderr))
end

describe("bgwf revert", function()
  local project

  before_each(function()
    project = helper.new_project()
    complete_chain(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("on a completed step of a COMPLETE execution", function()
    it("prints the changes", function()
      local reverted = project:run({ "revert", "1", "middle" })

      assert.are.equal(0, reverted.code, reverted.stderr)
      assert_prints_line(reverted, "execution 1: step 'middle' COMPLETED -> REVERTED")
      assert_prints_line(reverted, "execution 1: COMPLETE -> INCOMPLETE")
    end)

    it("marks the step REVERTED", function()
      assert.are.equal(0, project:run({ "revert", "1", "middle" }).code)

      local status = assert(project:status(1))
      local steps = helper.steps_by_token(status)
      assert.are.equal("REVERTED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal("INCOMPLETE", status.execution.status)
    end)

    it("makes the next attempt run the step again", function()
      assert.are.equal(0, project:run({ "revert", "1", "middle" }).code)

      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal(1, status.execution.id)
      assert.are.equal(2, status.attempt.id)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "middle"))
      assert.are.equal("COMPLETE", status.execution.status)
    end)

    it("leaves the other steps skipped", function()
      assert.are.equal(0, project:run({ "revert", "1", "middle" }).code)

      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("SKIPPED", steps.last.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "first"))
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "last"))
    end)
  end)

  describe("with --downstream", function()
    it("reverts the step and its dependents", function()
      local reverted = project:run({ "revert", "1", "middle", "--downstream" })

      assert.are.equal(0, reverted.code, reverted.stderr)
      assert_prints_line(reverted, "execution 1: step 'middle' COMPLETED -> REVERTED")
      assert_prints_line(reverted, "execution 1: step 'last' COMPLETED -> REVERTED")
      local steps = helper.steps_by_token(assert(project:status(1)))
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("REVERTED", steps.middle.status)
      assert.are.equal("REVERTED", steps.last.status)
    end)

    it("makes the next attempt run them again", function()
      assert.are.equal(0, project:run({ "revert", "1", "middle", "--downstream" }).code)

      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "first"))
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "middle"))
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "last"))
    end)
  end)

  describe("with --app", function()
    it("reverts in the newest execution of the application", function()
      local reverted = project:run({ "revert", "--app", "chain", "first" })

      assert.are.equal(0, reverted.code, reverted.stderr)
      assert_prints_line(reverted, "execution 1: step 'first' COMPLETED -> REVERTED")
      assert.are.equal("REVERTED", helper.steps_by_token(assert(project:status(1))).first.status)
    end)
  end)
end)

describe("bgwf complete", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("on a step whose precondition never holds", function()
    before_each(function()
      project:write("workflows/gated.lua", GATED_WORKFLOW)
      project:write("actions/never.lua", lifecycle.actions.never)
      project:write("actions/count.lua", lifecycle.actions.count)
      assert.are.equal(0, project:run({ "submit", "gated" }).code)
    end)

    it("lets its dependent start in the running attempt", function()
      local executor = project:start_executor("gated")
      -- Let the executor check the precondition a few times first.
      helper.sleep(1)
      local before = helper.steps_by_token(assert(project:status()))
      assert.are.equal("WAITING", before.gate.status)
      assert.are.equal("WAITING", before.opened.status)

      local completed = project:run({ "complete", "1", "gate" })

      assert.are.equal(0, completed.code, completed.stderr)
      assert_prints_line(completed, "execution 1: step 'gate' WAITING -> MANUALLY_COMPLETED")
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status, executor:describe())
      assert.are.equal("MANUALLY_COMPLETED", steps.gate.status)
      assert.are.equal("COMPLETED", steps.opened.status)
      assert.are.equal("COMPLETE", status.execution.status)
    end)

    it("does not run the completed step", function()
      project:start_executor("gated")
      assert.are.equal(0, project:run({ "complete", "1", "gate" }).code)

      project:wait_for_step("opened", "COMPLETED")

      assert.are.equal(0, lifecycle.count_runs(project, "counter", "gate"))
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "opened"))
    end)
  end)

  describe("on a FAILED step", function()
    it("makes the next attempt skip it", function()
      fail_chain(project)
      local completed = project:run({ "complete", "1", "middle" })
      assert.are.equal(0, completed.code, completed.stderr)
      assert_prints_line(completed, "execution 1: step 'middle' FAILED -> MANUALLY_COMPLETED")

      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal("SKIPPED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "middle"))
      assert.are.equal("COMPLETE", status.execution.status)
    end)
  end)
end)

describe("bgwf shutdown", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/handoff.lua", HANDOFF_WORKFLOW)
    project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
    project:write("actions/count.lua", lifecycle.actions.count)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("while a step runs", function()
    local executor

    before_each(function()
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      executor = project:start_executor("handoff")
      project:wait_for_file("started")
      project:wait_for_step("slow", "RUNNING")
    end)

    it("makes the attempt SHUTDOWN_PENDING", function()
      local stopped = project:run({ "shutdown", "1" })

      assert.are.equal(0, stopped.code, stopped.stderr)
      assert.is_truthy(stopped.stdout:find("execution 1: attempt 1 RUNNING -> SHUTDOWN_PENDING", 1, true),
        stopped.stdout)
      local status = assert(project:status())
      assert.are.equal("SHUTDOWN_PENDING", status.attempt.status)
      assert.are.equal("RUNNING", helper.steps_by_token(status).slow.status)
    end)

    it("lets the running step complete and starts nothing", function()
      assert.are.equal(0, project:run({ "shutdown", "1" }).code)
      project:write("release", "")

      local status = project:wait_for_attempt({ SHUTDOWN = true, FINISHED = true, FAILED = true })
      -- Give the executor time to start "next" if it wrongly would.
      helper.sleep(1)

      status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("SHUTDOWN", status.attempt.status, executor:describe())
      assert.are.equal("COMPLETED", steps.slow.status)
      assert.are.equal("WAITING", steps.next.status)
      assert.are.equal(0, lifecycle.count_runs(project, "counter", "next"))
      assert.are.equal("INCOMPLETE", status.execution.status)
      assert.is_true(executor:running(), "the executor keeps running")
    end)

    it("leaves the rest to a later submit", function()
      assert.are.equal(0, project:run({ "shutdown", "1" }).code)
      project:write("release", "")
      project:wait_for_attempt({ SHUTDOWN = true, FINISHED = true, FAILED = true })

      local resumed = project:run({ "submit", "handoff" })

      assert.are.equal(0, resumed.code, resumed.stderr)
      assert.are.equal(
        "resumed handoff: execution 1, attempt 2, 2 steps (1 skipped: done by an earlier attempt)\n",
        resumed.stdout)
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status, executor:describe())
      assert.are.equal("SKIPPED", steps.slow.status)
      assert.are.equal("COMPLETED", steps.next.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "next"))
      assert.are.equal("COMPLETE", status.execution.status)
    end)
  end)
end)

describe("bgwf cancel", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/sleepy.lua", SLEEPY_WORKFLOW)
    project:write("actions/nap.lua", lifecycle.actions.nap)
    project:write("actions/count.lua", lifecycle.actions.count)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("while a step sleeps", function()
    local executor, step_pid

    before_each(function()
      assert.are.equal(0, project:run({ "submit", "sleepy" }).code)
      executor = project:start_executor("sleepy", { "--kill-grace-ms", "500" })
      project:wait_for_file("started")
      project:wait_for_step("nap", "RUNNING")
      step_pid = tonumber(project:read("started"):match("%d+"))
    end)

    it("prints the changes", function()
      local cancelled = project:run({ "cancel", "1" })

      assert.are.equal(0, cancelled.code, cancelled.stderr)
      assert_prints_line(cancelled, "execution 1: INCOMPLETE -> CANCELLED")
    end)

    it("fails the step with a message", function()
      assert.are.equal(0, project:run({ "cancel", "1" }).code)

      local status = project:wait_for_step("nap", "FAILED")

      local steps = helper.steps_by_token(status)
      assert.are.equal("cancelled by operator", steps.nap.error)
      assert.are.equal("WAITING", steps.after_nap.status)
      assert.are.equal(0, lifecycle.count_runs(project, "counter", "nap"))
      helper.wait_until("the step's process " .. step_pid .. " is gone",
        function() return not helper.process_alive(step_pid) end, 30)
    end)

    it("cancels the execution and ends the attempt", function()
      assert.are.equal(0, project:run({ "cancel", "1" }).code)

      local status = project:wait_for_attempt({ FAILED = true, FINISHED = true, SHUTDOWN = true })

      assert.are.equal("CANCELLED", status.execution.status)
      assert.are.equal("FAILED", status.attempt.status)
      assert.is_true(executor:running(), "the executor keeps running")
    end)

    it("makes a later submit start a new execution", function()
      assert.are.equal(0, project:run({ "cancel", "1" }).code)
      project:wait_for_step("nap", "FAILED")

      local submitted = project:run({ "submit", "sleepy" })

      assert.are.equal(0, submitted.code, submitted.stderr)
      assert.is_truthy(submitted.stdout:find("submitted sleepy: execution 2,", 1, true),
        submitted.stdout)
      local first = assert(project:status(1))
      assert.are.equal("CANCELLED", first.execution.status)
      local second = project:wait_for_step("nap", "RUNNING", { execution = 2 })
      assert.are.equal("INCOMPLETE", second.execution.status)
    end)
  end)
end)

describe("bgwf cancel --app with --scope", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_chain(project)
    lifecycle.submit_and_drain(project, "chain", { "--scope", "eu" })
    lifecycle.submit_and_drain(project, "chain", { "--scope", "us" })
  end)

  after_each(function()
    project:cleanup()
  end)

  it("cancels that scope's execution only", function()
    local cancelled = project:run({ "cancel", "--app", "chain", "--scope", "us" })

    assert.are.equal(0, cancelled.code, cancelled.stderr)
    assert_prints_line(cancelled, "execution 2: INCOMPLETE -> CANCELLED")
    assert.are.equal("INCOMPLETE", assert(project:status(1)).execution.status)
    assert.are.equal("CANCELLED", assert(project:status(2)).execution.status)
  end)
end)

describe("a rejected operator command", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  -- Each case sets up execution 1 with no executor running, runs one
  -- command that the state does not allow, and names a fragment the error
  -- must contain: the value it rejects, or the status that forbids it.
  local cases = {
    {
      name = "revert of an unknown execution",
      setup = complete_chain,
      args = { "revert", "99", "first" },
      fragment = "99",
    },
    {
      name = "show of an unknown execution",
      setup = complete_chain,
      args = { "show", "99" },
      fragment = "99",
    },
    {
      name = "revert of an unknown token",
      setup = complete_chain,
      args = { "revert", "1", "nosuch" },
      fragment = "'nosuch'",
    },
    {
      name = "complete of an unknown token",
      setup = fail_chain,
      args = { "complete", "1", "nosuch" },
      fragment = "'nosuch'",
    },
    {
      name = "revert of a WAITING step",
      setup = fail_chain,
      args = { "revert", "1", "last" },
      fragment = "WAITING",
    },
    {
      name = "revert of a FAILED step",
      setup = fail_chain,
      args = { "revert", "1", "middle" },
      fragment = "FAILED",
    },
    {
      name = "complete of a COMPLETED step",
      setup = fail_chain,
      args = { "complete", "1", "first" },
      fragment = "COMPLETED",
    },
    {
      name = "revert while an attempt runs",
      setup = function(project)
        complete_chain(project)
        assert.are.equal(0, project:run({ "revert", "1", "middle" }).code)
        assert.are.equal(0, project:run({ "submit", "chain" }).code)
      end,
      args = { "revert", "1", "first" },
      fragment = "RUNNING",
    },
    {
      name = "cancel of a COMPLETE execution",
      setup = complete_chain,
      args = { "cancel", "1" },
      fragment = "COMPLETE",
    },
    {
      name = "cancel of a CANCELLED execution",
      setup = function(project)
        fail_chain(project)
        assert.are.equal(0, project:run({ "cancel", "1" }).code)
      end,
      args = { "cancel", "1" },
      fragment = "CANCELLED",
    },
    {
      name = "shutdown of a FAILED attempt",
      setup = fail_chain,
      args = { "shutdown", "1" },
      fragment = "FAILED",
    },
    {
      name = "shutdown of a FINISHED attempt",
      setup = complete_chain,
      args = { "shutdown", "1" },
      fragment = "FINISHED",
    },
    {
      name = "shutdown of an unknown application",
      setup = complete_chain,
      args = { "shutdown", "--app", "nosuch" },
      fragment = "nosuch",
    },
    {
      name = "complete in a CANCELLED execution",
      setup = function(project)
        fail_chain(project)
        assert.are.equal(0, project:run({ "cancel", "1" }).code)
      end,
      args = { "complete", "1", "middle" },
      fragment = "CANCELLED",
    },
  }

  for _, case in ipairs(cases) do
    describe(case.name, function()
      it("exits 1 with an error and changes nothing", function()
        case.setup(project)
        local before = lifecycle.snapshot(project, 1)

        local result = project:run(case.args)

        assert.are.equal(1, result.code, result.stdout .. result.stderr)
        assert.is_truthy(result.stderr:find("^bgwf: "), result.stderr)
        assert.is_truthy(result.stderr:find(case.fragment, 1, true),
          ("expected %q in: %s"):format(case.fragment, result.stderr))
        assert.are.equal("", result.stdout)
        assert.are.equal(before, lifecycle.snapshot(project, 1))
      end)
    end)
  end
end)
