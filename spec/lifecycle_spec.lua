-- The life of an execution across attempts: resuming after a failure or
-- after a dead executor, starting a new execution, and the rule of one
-- running attempt per (application, scope).

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

-- The chain with "last" renamed to "final".
local RENAMED_CHAIN_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter", flag = "@DIR@/flag" }
  local first = wf:step("first", "count", files)
  local middle = wf:step("middle", "needs_flag", files, { after = { first } })
  return { wf:step("final", "count", files, { after = { middle } }) }
end
]]

-- "slow" waits for the file "release", and "next" runs after it.
local HANDOFF_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter" }
  local first = wf:step("first", "count", files)
  local slow = wf:step("slow", "wait_for_release", {
    started = "@DIR@/started", release = "@DIR@/release", finished = "@DIR@/finished",
  }, { after = { first } })
  return { wf:step("next", "count", files, { after = { slow } }) }
end
]]

local function write_chain(project)
  project:write("workflows/chain.lua", CHAIN_WORKFLOW)
  project:write("actions/count.lua", lifecycle.actions.count)
  project:write("actions/needs_flag.lua", lifecycle.actions.needs_flag)
end

-- Run the chain once without the flag file, so that its attempt fails.
local function fail_chain_once(project, submit_args)
  local status = lifecycle.submit_and_drain(project, "chain", submit_args)
  assert.are.equal("FAILED", status.attempt.status)
  assert.are.equal("FAILED", helper.steps_by_token(status).middle.status)
  return status
end

describe("bgwf submit", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("after a failed attempt", function()
    before_each(function()
      write_chain(project)
      fail_chain_once(project)
    end)

    it("resumes the same execution", function()
      project:write("flag", "")

      local resumed = project:run({ "submit", "chain" })

      assert.are.equal(0, resumed.code, resumed.stderr)
      assert.are.equal(
        "resumed chain: execution 1, attempt 2, 3 steps (1 skipped: done by an earlier attempt)\n",
        resumed.stdout)
      local status = assert(project:status())
      assert.are.equal(1, status.execution.id)
      assert.are.equal(2, status.attempt.id)
      assert.are.equal("RUNNING", status.attempt.status)
    end)

    it("skips the completed step", function()
      project:write("flag", "")

      local status = lifecycle.submit_and_drain(project, "chain")

      assert.are.equal("SKIPPED", helper.steps_by_token(status).first.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "first"))
    end)

    it("runs the failed step and its dependents", function()
      project:write("flag", "")

      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "middle"))
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "last"))
    end)

    it("completes the execution", function()
      project:write("flag", "")

      local status = lifecycle.submit_and_drain(project, "chain")

      assert.are.equal(1, status.execution.id)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETE", status.execution.status)
    end)

    it("keeps the failed attempt in the history", function()
      project:write("flag", "")
      lifecycle.submit_and_drain(project, "chain")

      local show_json = lifecycle.run_json(project, { "show", "1", "--json" })

      assert.are.equal(2, #show_json.attempts)
      assert.are.equal(1, show_json.attempts[1].id)
      assert.are.equal("FAILED", show_json.attempts[1].status)
      assert.are.equal(2, show_json.attempts[2].id)
      assert.are.equal("FINISHED", show_json.attempts[2].status)
    end)
  end)

  describe("after a step vanished from the workflow", function()
    before_each(function()
      write_chain(project)
      fail_chain_once(project)
      project:write("flag", "")
      project:write("workflows/chain.lua", RENAMED_CHAIN_WORKFLOW)
    end)

    it("warns that the step will not run", function()
      local resumed = project:run({ "submit", "chain" })

      assert.are.equal(0, resumed.code, resumed.stderr)
      assert.is_truthy(resumed.stderr:find(
        "bgwf: warning: step 'last' of the previous attempt is no longer in workflow chain; it will not run",
        1, true), resumed.stderr)
      assert.is_truthy(resumed.stdout:find("resumed chain: execution 1, attempt 2", 1, true),
        resumed.stdout)
    end)

    it("runs the new step instead", function()
      local status = lifecycle.submit_and_drain(project, "chain")

      assert.are.same({ "final", "first", "middle" }, helper.tokens(status))
      local steps = helper.steps_by_token(status)
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.final.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "final"))
      assert.are.equal(0, lifecycle.count_runs(project, "counter", "last"))
      assert.are.equal("COMPLETE", status.execution.status)
    end)
  end)

  describe("with --new-execution after a failed attempt", function()
    before_each(function()
      write_chain(project)
      fail_chain_once(project)
      project:write("flag", "")
    end)

    it("starts a second execution", function()
      local submitted = project:run({ "submit", "chain", "--new-execution" })

      assert.are.equal(0, submitted.code, submitted.stderr)
      assert.is_truthy(submitted.stdout:find("submitted chain: execution 2,", 1, true),
        submitted.stdout)
      local status = assert(project:status())
      assert.are.equal(2, status.execution.id)
    end)

    it("runs every step again", function()
      local status = lifecycle.submit_and_drain(project, "chain", { "--new-execution" })

      local steps = helper.steps_by_token(status)
      assert.are.equal(2, status.execution.id)
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("COMPLETED", steps.middle.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "first"))
    end)

    it("leaves the first execution INCOMPLETE", function()
      lifecycle.submit_and_drain(project, "chain", { "--new-execution" })

      local first = assert(project:status(1))
      assert.are.equal("INCOMPLETE", first.execution.status)
      assert.are.equal("FAILED", first.attempt.status)
    end)
  end)

  describe("after a COMPLETE execution", function()
    before_each(function()
      write_chain(project)
      project:write("flag", "")
      local status = lifecycle.submit_and_drain(project, "chain")
      assert.are.equal("COMPLETE", status.execution.status)
    end)

    it("starts a new execution", function()
      local submitted = project:run({ "submit", "chain" })

      assert.are.equal(0, submitted.code, submitted.stderr)
      assert.is_truthy(submitted.stdout:find("submitted chain: execution 2,", 1, true),
        submitted.stdout)
      assert.is_falsy(submitted.stdout:find("resumed", 1, true), submitted.stdout)
    end)

    it("runs every step again", function()
      local status = lifecycle.submit_and_drain(project, "chain")

      local steps = helper.steps_by_token(status)
      assert.are.equal(2, status.execution.id)
      assert.are.equal("COMPLETED", steps.first.status)
      assert.are.equal("COMPLETED", steps.last.status)
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "first"))
      assert.are.equal(2, lifecycle.count_runs(project, "counter", "last"))
    end)
  end)

  describe("after the executor died mid-step", function()
    it("resumes the execution and runs the step again", function()
      project:write("workflows/handoff.lua", HANDOFF_WORKFLOW)
      project:write("actions/count.lua", lifecycle.actions.count)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local heartbeat = { "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000" }
      local first = project:start_executor("handoff", heartbeat, { name = "doomed_executor" })
      project:wait_for_file("started")
      project:wait_for_step("slow", "RUNNING")
      local orphan_pid = tonumber(project:read("started"):match("%d+"))

      first:signal("KILL")
      first:wait()
      -- The step's process may outlive its executor. End it, so that only
      -- the next attempt can complete the step.
      helper.shell(("kill -KILL %d 2>/dev/null"):format(orphan_pid))
      local second = project:start_executor("handoff", heartbeat, { name = "second_executor" })
      local failed = project:wait_for_attempt({ FAILED = true, FINISHED = true })
      assert.are.equal("FAILED", failed.attempt.status)
      assert.are.equal("FAILED", helper.steps_by_token(failed).slow.status)

      project:write("release", "")
      local resumed = project:run({ "submit", "handoff" })

      assert.are.equal(0, resumed.code, resumed.stderr)
      assert.are.equal(
        "resumed handoff: execution 1, attempt 2, 3 steps (1 skipped: done by an earlier attempt)\n",
        resumed.stdout)
      local status = project:wait_for_attempt({ FAILED = true, FINISHED = true })
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status, second:describe())
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("COMPLETED", steps.slow.status)
      assert.are.equal("COMPLETED", steps.next.status)
      assert.are.equal(1, lifecycle.count_runs(project, "counter", "first"))
      assert.are.equal("COMPLETE", status.execution.status)
    end)
  end)

  describe("while an attempt runs", function()
    before_each(function()
      write_chain(project)
      local submitted = project:run({ "submit", "chain" })
      assert.are.equal(0, submitted.code, submitted.stderr)
    end)

    it("rejects a second submit without a scope", function()
      local second = project:run({ "submit", "chain" })

      assert.are.equal(1, second.code)
      assert.is_truthy(second.stderr:find("^bgwf: "), second.stderr)
      assert.is_truthy(second.stderr:find("attempt 1 of execution 1", 1, true), second.stderr)
      assert.are.equal(1, project:count_rows("attempts"))
    end)

    it("accepts a submit for a scope", function()
      local scoped = project:run({ "submit", "chain", "--scope", "eu" })

      assert.are.equal(0, scoped.code, scoped.stderr)
      assert.are.equal(2, project:count_rows("executions"))
      assert.are.equal(2, project:count_rows("attempts"))
    end)

    it("rejects a second submit for the same scope", function()
      local first = project:run({ "submit", "chain", "--scope", "eu" })
      assert.are.equal(0, first.code, first.stderr)

      local second = project:run({ "submit", "chain", "--scope", "eu" })

      assert.are.equal(1, second.code)
      assert.is_truthy(second.stderr:find("attempt 2 of execution 2", 1, true), second.stderr)
      assert.are.equal(2, project:count_rows("attempts"))
    end)
  end)

  describe("for a scope after its attempt failed", function()
    it("resumes that scope's execution only", function()
      write_chain(project)
      fail_chain_once(project, { "--scope", "eu" })
      fail_chain_once(project, { "--scope", "us" })
      project:write("flag", "")

      local resumed = project:run({ "submit", "chain", "--scope", "us" })

      assert.are.equal(0, resumed.code, resumed.stderr)
      assert.is_truthy(resumed.stdout:find("resumed chain: execution 2, attempt 3", 1, true),
        resumed.stdout)
      local eu = assert(project:status(1))
      assert.are.equal("eu", eu.execution.scope)
      assert.are.equal("FAILED", eu.attempt.status)
    end)
  end)

  describe("twice at the same instant", function()
    -- Each round is cheap, and a race that loses only now and then needs
    -- many rounds to show up.
    local ROUNDS = 40

    -- Run one round on a new project and check it. Every assert message
    -- names the round and shows both outputs.
    local function check_round(round, prepare)
      local fresh = helper.new_project()
      local ok, problem = pcall(function()
        write_chain(fresh)
        if prepare then
          prepare(fresh)
        end

        local results = lifecycle.submit_twice_at_once(fresh, { "submit", "chain" }, round)

        local context = ("round %d: exits %s and %s\nfirst stderr: %s\nsecond stderr: %s"):format(
          round, tostring(results[1].code), tostring(results[2].code),
          results[1].stderr, results[2].stderr)
        local winner, loser = results[1], results[2]
        if winner.code ~= 0 then
          winner, loser = loser, winner
        end
        assert.are.equal(0, winner.code, context)
        assert.are.equal(1, loser.code, context)
        assert.is_truthy(loser.stderr:find("attempt 1 of execution 1", 1, true),
          context)
        assert.are.equal(1, fresh:count_rows("attempts"), context)
        assert.are.equal(1, fresh:count_rows("executions"), context)
      end)
      fresh:cleanup()
      if not ok then
        error(problem, 0)
      end
    end

    it("stores one attempt on a fresh database", function()
      for round = 1, ROUNDS do
        check_round(round)
      end
    end)

    it("stores one attempt on an existing database", function()
      for round = 1, ROUNDS do
        check_round(round, function(fresh)
          -- A subscription is the one write that needs no workflow file.
          local created = fresh:run({ "notify", "other", "--on", "FAILURE", "--command", "true" })
          assert.are.equal(0, created.code, created.stderr)
          assert.is_true(fresh:database_exists(), "bgwf notify creates the database")
        end)
      end
    end)
  end)
end)
