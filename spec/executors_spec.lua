-- Several executor processes on one database: claiming, graceful and
-- forced shutdown, and failing the steps of an executor that died.

local helper = require("helper")

local STEP_COUNT = 40

-- Forty independent steps. The workflow returns nil, so every declared
-- step belongs to it.
local FANOUT_WORKFLOW = [[
return function(wf, ctx)
  for i = 1, ]] .. STEP_COUNT .. [[ do
    wf:step("s" .. i, "record_slowly", { ledger = "@DIR@/ledger" })
  end
end
]]

-- Append "token pid" to the ledger, then take a moment so that steps of
-- both executors overlap.
local RECORD_SLOWLY = [[
return {
  execute = function(step, ctx)
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local ledger = assert(io.open(ctx.ledger, "a"))
    ledger:write(step.token, " ", pid, "\n")
    ledger:close()
    os.execute("sleep 0.05")
  end,
}
]]

-- "slow" runs until the file "release" exists, and "next" runs after it.
local HANDOFF_WORKFLOW = [[
return function(wf, ctx)
  local slow = wf:step("slow", "wait_for_release", {
    started = "@DIR@/started", release = "@DIR@/release", finished = "@DIR@/finished",
  })
  return { wf:step("next", "noop", {}, { after = { slow }, cooldown = 0 }) }
end
]]

local function write_handoff(project)
  project:write("workflows/handoff.lua", HANDOFF_WORKFLOW)
  project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
end

-- Start an executor of "handoff" and wait until it runs the step "slow".
-- Return the process and the executor id that status shows for "slow".
local function start_slow_step(project, args)
  local executor = project:start_executor("handoff", args, { name = "first_executor" })
  project:wait_for_file("started")
  local status = project:wait_for_step("slow", "RUNNING")
  local executor_id = helper.steps_by_token(status).slow.executor
  assert.is_not_nil(executor_id, "status names the executor of a running step")
  return executor, executor_id
end

describe("bgwf executor", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("two of them on 40 parallel steps", function()
    it("run each step exactly once", function()
      project:write("workflows/fanout.lua", FANOUT_WORKFLOW)
      project:write("actions/record_slowly.lua", RECORD_SLOWLY)
      local submitted = project:run({ "submit", "fanout" })
      assert.are.equal(0, submitted.code, submitted.stderr)

      local executor_args = { "--poll-ms", "20", "--max-concurrent", "4" }
      project:start_executor("fanout", executor_args, { name = "executor_a" })
      project:start_executor("fanout", executor_args, { name = "executor_b" })
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true }, { deadline = 120 })

      assert.are.equal("FINISHED", status.attempt.status)
      local runs = {}
      for _, line in ipairs(project:lines("ledger")) do
        local token = line:match("^(%S+)")
        runs[token] = (runs[token] or 0) + 1
      end
      for i = 1, STEP_COUNT do
        assert.are.equal(1, runs["s" .. i], "runs of s" .. i)
      end
      assert.are.equal(STEP_COUNT, #project:lines("ledger"))
      for _, step in ipairs(status.steps) do
        assert.are.equal("COMPLETED", step.status, step.token .. " status")
      end
    end)
  end)

  describe("with --max-concurrent 2", function()
    it("runs at most 2 steps at once", function()
      project:write("workflows/limited.lua", [[
return function(wf, ctx)
  for i = 1, 6 do
    wf:step("c" .. i, "overlap", { events = "@DIR@/events" }, { cooldown = 0 })
  end
end
]])
      -- Append "start TOKEN" and "end TOKEN" around a short pause. Appends
      -- to one file are ordered, so the file replays which steps overlapped.
      project:write("actions/overlap.lua", [[
local function append(path, line)
  local file = assert(io.open(path, "a"))
  file:write(line, "\n")
  file:close()
end

return {
  execute = function(step, ctx)
    append(ctx.events, "start " .. step.token)
    os.execute("sleep 0.2")
    append(ctx.events, "end " .. step.token)
  end,
}
]])
      assert.are.equal(0, project:run({ "submit", "limited" }).code)

      project:start_executor("limited", { "--max-concurrent", "2" })
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })

      assert.are.equal("FINISHED", status.attempt.status)
      local events = project:lines("events")
      assert.are.equal(12, #events)
      local running, max_running = 0, 0
      for _, event in ipairs(events) do
        if event:match("^start ") then
          running = running + 1
        else
          running = running - 1
        end
        max_running = math.max(max_running, running)
      end
      assert.is_true(max_running <= 2,
        ("%d steps ran at once:\n%s"):format(max_running, table.concat(events, "\n")))
    end)
  end)

  for _, signal in ipairs({ "TERM", "INT" }) do
    describe("on SIG" .. signal .. " while a step runs", function()
      it("lets the step complete and exits 0", function()
        write_handoff(project)
        assert.are.equal(0, project:run({ "submit", "handoff" }).code)
        local executor = start_slow_step(project)

        executor:signal(signal)
        helper.sleep(0.5)
        assert.is_true(executor:running(), "the executor waits for its running step")
        project:write("release", "")

        assert.are.equal(0, executor:wait())
        local steps = helper.steps_by_token(assert(project:status()))
        assert.are.equal("COMPLETED", steps.slow.status)
        assert.is_true(project:exists("finished"))
      end)

      it("claims no further step", function()
        write_handoff(project)
        assert.are.equal(0, project:run({ "submit", "handoff" }).code)
        local executor = start_slow_step(project)

        executor:signal(signal)
        helper.sleep(0.5)
        project:write("release", "")

        assert.are.equal(0, executor:wait())
        local status = assert(project:status())
        local steps = helper.steps_by_token(status)
        assert.are.equal("WAITING", steps.next.status)
        assert.are.equal("RUNNING", status.attempt.status)
      end)
    end)
  end

  describe("stopping while a second executor runs", function()
    it("hands the next step to the second executor", function()
      write_handoff(project)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local first, first_id = start_slow_step(project)

      first:signal("TERM")
      project:start_executor("handoff", nil, { name = "second_executor" })
      helper.sleep(0.5)
      assert.is_true(first:running(), "the first executor waits for its running step")
      project:write("release", "")

      assert.are.equal(0, first:wait())
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETED", steps.slow.status)
      assert.are.equal(first_id, steps.slow.executor)
      assert.are.equal("COMPLETED", steps.next.status)
      assert.is_not_nil(steps.next.executor)
      assert.are_not.equal(first_id, steps.next.executor)
    end)
  end)

  describe("on a second SIGTERM while a step runs", function()
    it("fails the step and exits", function()
      write_handoff(project)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local executor = start_slow_step(project)
      local child_pid = tonumber(project:read("started"):match("%d+"))

      executor:signal("TERM")
      -- Pause so that the two signals arrive as two deliveries, not one.
      helper.sleep(1)
      assert.is_true(executor:running(), "the first SIGTERM waits for the running step")
      executor:signal("TERM")

      executor:wait()
      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FAILED", steps.slow.status)
      assert.are.equal("FAILED", status.attempt.status)
      assert.is_false(project:exists("finished"))
      helper.wait_until("the step's process " .. child_pid .. " is gone",
        function() return not helper.process_alive(child_pid) end, 10)
    end)
  end)

  describe("frozen with SIGSTOP while a step runs", function()
    it("cannot complete the step another executor failed", function()
      write_handoff(project)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local heartbeat = { "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000" }
      local first, first_id = start_slow_step(project, heartbeat)

      first:signal("STOP")
      project:start_executor("handoff", heartbeat, { name = "second_executor" })
      local failed = project:wait_for_step("slow", "FAILED")
      local message = helper.steps_by_token(failed).slow.error or ""
      assert.is_truthy(message:find("executor " .. tostring(first_id), 1, true), message)

      -- Once it runs again, the first executor learns from its heartbeat
      -- that it was declared dead and kills its step, which may already
      -- run elsewhere; nothing it reports counts.
      first:signal("CONT")
      helper.wait_until("the first executor kills its step", function()
        return first:stderr():find("had been declared dead", 1, true) ~= nil
      end)
      project:write("release", "")
      helper.sleep(3)

      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FAILED", steps.slow.status)
      assert.are.equal("WAITING", steps.next.status)
      assert.are.equal("FAILED", status.attempt.status)
      assert.is_false(project:exists("finished"), "the killed step still finished")
    end)
  end)

  describe("killed with SIGKILL while a step runs", function()
    it("has its step failed by another executor", function()
      write_handoff(project)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local heartbeat = { "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000" }
      local first, first_id = start_slow_step(project, heartbeat)

      first:signal("KILL")
      assert.are.equal(128 + 9, first:wait())
      project:start_executor("handoff", heartbeat, { name = "second_executor" })

      local status = project:wait_for_step("slow", "FAILED")
      local message = helper.steps_by_token(status).slow.error or ""
      assert.is_truthy(message:find("executor " .. tostring(first_id), 1, true), message)
      assert.is_truthy(message:find(helper.hostname(), 1, true), message)
      assert.is_truthy(message:find("stopped heartbeating", 1, true), message)
    end)

    it("fails the attempt", function()
      write_handoff(project)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local heartbeat = { "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1000" }
      local first = start_slow_step(project, heartbeat)

      first:signal("KILL")
      first:wait()
      project:start_executor("handoff", heartbeat, { name = "second_executor" })

      local status = project:wait_for_attempt({ FAILED = true, FINISHED = true })
      assert.are.equal("FAILED", status.attempt.status)
      assert.are.equal("WAITING", helper.steps_by_token(status).next.status)
    end)
  end)
end)
