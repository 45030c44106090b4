-- Step policies under stress: retries with backoff, timeouts that kill a
-- step's whole process group, memory limits, preconditions that misbehave,
-- the per-application limit shared by executors, and retries after an
-- executor dies.

local helper = require("helper")
local robustness = require("robustness_helper")

-- A step that fails until its try reaches ctx.succeed_on_try (never when
-- the field is absent).
local FLAKY_ACTION = [[
return {
  execute = function(step, ctx)
    if not ctx.succeed_on_try or step.try < ctx.succeed_on_try then
      error("try " .. step.try .. " failed on purpose")
    end
    step:status("succeeded on try " .. step.try)
  end,
}
]]

-- A step that writes its pid to ctx.step_pid, starts a grandchild shell
-- command ctx.grandchild in the background, writes the grandchild's pid to
-- ctx.grandchild_pid and waits for it.
local SPAWN_ACTION = [[
return {
  execute = function(step, ctx)
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local file = assert(io.open(ctx.step_pid, "w"))
    file:write(pid, "\n")
    file:close()
    os.execute(ctx.grandchild .. " & echo $! > " .. ctx.grandchild_pid .. "; wait")
  end,
}
]]

-- A step that builds a table of distinct strings of ctx.chunk bytes until
-- it contains ctx.total bytes.
local ALLOCATE_ACTION = [[
return {
  execute = function(step, ctx)
    local chunks = {}
    for i = 1, ctx.total // ctx.chunk do
      chunks[i] = string.rep("x", ctx.chunk - 12) .. string.format("%12d", i)
    end
    step:status("allocated " .. #chunks .. " chunks")
  end,
}
]]

-- One step whose precondition misbehaves in the way ctx.kind names, beside a
-- sibling step that has no precondition.
local PRECONDITION_ACTION = [[
local function recurse(depth)
  return recurse(depth + 1) + 1
end

return {
  precondition = function(ctx)
    if ctx.kind == "raise" then
      error("the precondition broke on purpose")
    elseif ctx.kind == "exit" then
      os.exit(7)
    elseif ctx.kind == "recurse" then
      return recurse(1) > 0
    elseif ctx.kind == "memory" then
      local chunks = {}
      for i = 1, math.maxinteger do
        chunks[i] = string.rep("y", 1 << 20) .. i
      end
    elseif ctx.kind == "hang" then
      while true do end
    end
    return true
  end,
  execute = function(step, ctx) end,
}
]]

local function precondition_workflow(kind)
  return ([[
return function(wf, ctx)
  wf:step("guarded", "misbehave", { kind = %q }, { cooldown = 0, max_memory = 128 * 1024 * 1024 })
  wf:step("sibling", "noop", {})
end
]]):format(kind)
end

local ONE_NOOP_WORKFLOW = [[
return function(wf, ctx)
  wf:step("only", "noop", {})
end
]]

local function try_statuses(step)
  local statuses = {}
  for _, try in ipairs(step.tries or {}) do
    statuses[#statuses + 1] = try.status
  end
  return table.concat(statuses, ",")
end

local function read_pid(project, relative)
  project:wait_for_file(relative)
  local pid
  helper.wait_until(relative .. " contains a pid", function()
    pid = tonumber((project:read(relative) or ""):match("%d+"))
    return pid
  end, 20)
  return pid
end

describe("retries", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/flaky.lua", FLAKY_ACTION)
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  it("completes a flaky step on try 3", function()
    project:write("workflows/flaky.lua", [[
return function(wf, ctx)
  wf:step("flaky", "flaky", { succeed_on_try = 3 },
          { retries = 3, retry_backoff = { initial = 0.5, factor = 2, max = 5 } })
end
]])
    local result = project:run({ "run", "flaky", "--poll-ms", "50" })
    assert.are.equal(0, result.code, result.stderr)

    local step = robustness.show_step(project, 1, "flaky")
    assert.are.equal("COMPLETED", step.status)
    assert.are.equal(3, step.try)
    assert.are.equal(3, #step.tries, try_statuses(step))
    assert.are.equal("FAILED,FAILED,COMPLETED", try_statuses(step))
    for number, try in ipairs(step.tries) do
      assert.are.equal(number, try.try)
    end
    assert.is_truthy((step.tries[1].error or ""):find("try 1 failed on purpose", 1, true),
      step.tries[1].error)
    assert.is_truthy((step.tries[2].error or ""):find("try 2 failed on purpose", 1, true),
      step.tries[2].error)
    assert.is_nil(step.tries[3].error)
  end)

  it("waits at least the backoff between tries", function()
    project:write("workflows/flaky.lua", [[
return function(wf, ctx)
  wf:step("flaky", "flaky", { succeed_on_try = 3 },
          { retries = 2, retry_backoff = { initial = 0.5, factor = 2, max = 5 } })
end
]])
    local result = project:run({ "run", "flaky", "--poll-ms", "50" })
    assert.are.equal(0, result.code, result.stderr)

    -- Only lower bounds: a slow machine makes the gaps longer, never shorter.
    local tries = robustness.show_step(project, 1, "flaky").tries
    assert.are.equal(3, #tries)
    local first_gap = tries[2].started_at - tries[1].ended_at
    local second_gap = tries[3].started_at - tries[2].ended_at
    assert.is_true(first_gap >= 500, "first backoff was " .. first_gap .. " ms")
    assert.is_true(second_gap >= 1000, "second backoff was " .. second_gap .. " ms")
  end)

  it("fails the attempt while a retry waits", function()
    project:write("actions/fail_once_then_mark.lua", [[
return {
  execute = function(step, ctx)
    if step.try == 1 then
      io.open(ctx.marker, "w"):close()
      error("the first try failed on purpose")
    end
  end,
}
]])
    project:write("actions/fail_after_mark.lua", [[
return {
  execute = function(step, ctx)
    local give_up_at = os.time() + 60
    while not io.open(ctx.marker) and os.time() < give_up_at do
      os.execute("sleep 0.05")
    end
    error("failed after the other step's first try")
  end,
}
]])
    -- "retrying" fails its first try and waits 600 s for its retry, and
    -- meanwhile "broken", which has no retries, fails the attempt. Nothing
    -- runs after that, so the attempt must end FAILED without the retry.
    project:write("workflows/pending.lua", [[
return function(wf, ctx)
  wf:step("retrying", "fail_once_then_mark", { marker = "@DIR@/marker" },
          { retries = 2, retry_backoff = 600 })
  wf:step("broken", "fail_after_mark", { marker = "@DIR@/marker" })
end
]])
    local executor = project:start_executor("pending")
    local execution = robustness.submit(project, "pending")
    project:wait_for_step("broken", "FAILED", { execution = execution })

    local status = project:wait_for_attempt({ FAILED = true, FINISHED = true },
      { execution = execution })

    assert.are.equal("FAILED", status.attempt.status)
    assert.is_true(executor:running(), executor:describe())
  end)

  it("fails the step once retries are exhausted", function()
    project:write("workflows/hopeless.lua", [[
return function(wf, ctx)
  wf:step("hopeless", "flaky", {}, { retries = 2, retry_backoff = 0.1 })
  wf:step("sibling", "noop", {})
end
]])
    local result = project:run({ "run", "hopeless", "--poll-ms", "50" })
    assert.are.equal(1, result.code, result.stderr)

    local status = assert(project:status())
    local steps = helper.steps_by_token(status)
    assert.are.equal("FAILED", status.attempt.status)
    assert.are.equal("FAILED", steps.hopeless.status)
    assert.are.equal(3, steps.hopeless.try)
    assert.are.equal("COMPLETED", steps.sibling.status)
    local step = robustness.show_step(project, 1, "hopeless")
    assert.are.equal("FAILED,FAILED,FAILED", try_statuses(step))
    assert.is_truthy((step.error or ""):find("try 3 failed on purpose", 1, true), step.error)
  end)
end)

describe("timeout", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/spawn.lua", SPAWN_ACTION)
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  it("kills a sleeping step and its grandchild", function()
    project:write("workflows/sleepy.lua", [[
return function(wf, ctx)
  wf:step("sleepy", "spawn", { step_pid = "@DIR@/step.pid", grandchild_pid = "@DIR@/grandchild.pid",
                               grandchild = "sleep 300" }, { timeout = 1 })
end
]])
    local executor = project:start_executor("sleepy", { "--kill-grace-ms", "500" })
    robustness.submit(project, "sleepy")
    local step_pid = read_pid(project, "step.pid")
    local grandchild_pid = read_pid(project, "grandchild.pid")

    local status = project:wait_for_step("sleepy", "FAILED")

    local step = helper.steps_by_token(status).sleepy
    assert.is_truthy((step.error or ""):find("step timed out after 1 s", 1, true), step.error)
    assert.is_true(robustness.wait_pid_gone(grandchild_pid, 30),
      "the grandchild sleep (pid " .. grandchild_pid .. ") outlived the timed-out step")
    assert.is_true(robustness.wait_pid_gone(step_pid, 30),
      "the timed-out step (pid " .. step_pid .. ") is still alive")
    assert.is_true(executor:running(), executor:describe())
  end)

  it("kills a grandchild that ignores SIGTERM", function()
    project:write("workflows/stubborn.lua", [[
return function(wf, ctx)
  wf:step("stubborn", "spawn", { step_pid = "@DIR@/step.pid", grandchild_pid = "@DIR@/grandchild.pid",
                                 grandchild = "sh -c 'trap \"\" TERM; exec sleep 300'" },
          { timeout = 1 })
end
]])
    local executor = project:start_executor("stubborn", { "--kill-grace-ms", "500" })
    robustness.submit(project, "stubborn")
    local grandchild_pid = read_pid(project, "grandchild.pid")

    local status = project:wait_for_step("stubborn", "FAILED")

    local step = helper.steps_by_token(status).stubborn
    assert.is_truthy((step.error or ""):find("step timed out after 1 s", 1, true), step.error)
    assert.is_true(robustness.wait_pid_gone(grandchild_pid, 30),
      "the grandchild (pid " .. grandchild_pid .. ") that ignores SIGTERM was never killed")
    assert.is_true(executor:running(), executor:describe())
  end)
end)

describe("max_memory", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/allocate.lua", ALLOCATE_ACTION)
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  it("fails a step that allocates past it", function()
    project:write("workflows/greedy.lua", [[
return function(wf, ctx)
  wf:step("greedy", "allocate", { total = 1024 * 1024 * 1024, chunk = 1024 * 1024 },
          { max_memory = 64 * 1024 * 1024 })
  wf:step("modest", "allocate", { total = 4 * 1024 * 1024, chunk = 1024 * 1024 },
          { max_memory = 64 * 1024 * 1024 })
end
]])
    local result = project:run({ "run", "greedy", "--poll-ms", "50" })
    assert.are.equal(1, result.code, result.stderr)

    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("FAILED", steps.greedy.status)
    local message = steps.greedy.error or ""
    assert.is_truthy(message:find("not enough memory", 1, true), message)
    assert.is_truthy(message:find("the step's max_memory of 67108864 bytes was reached", 1, true),
      message)
    assert.are.equal("COMPLETED", steps.modest.status)
    assert.are.equal("allocated 4 chunks", steps.modest.message)
  end)
end)

describe("a misbehaving precondition", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/misbehave.lua", PRECONDITION_ACTION)
    project:write("workflows/followup.lua", ONE_NOOP_WORKFLOW)
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  -- Run the precondition of kind `kind` beside a sibling step, expect the
  -- guarded step FAILED with `reason` and the sibling COMPLETED, then check
  -- that the same executor still runs a step of another workflow.
  local function check_precondition(kind, reason, deadline)
    project:write("workflows/guarded.lua", precondition_workflow(kind))
    local executor = project:start_executor("guarded,followup")
    local execution = robustness.submit(project, "guarded")

    local status = project:wait_for_status("the guarded step FAILED and the sibling COMPLETED",
      function(_, steps)
        return steps.guarded and steps.guarded.status == "FAILED"
          and steps.sibling and steps.sibling.status == "COMPLETED"
      end, { execution = execution, deadline = deadline })

    local guarded = helper.steps_by_token(status).guarded
    assert.is_truthy((guarded.error or ""):find(reason, 1, true), guarded.error)
    assert.is_true(executor:running(), executor:describe())
    local followup = robustness.submit(project, "followup")
    project:wait_for_step("only", "COMPLETED", { execution = followup })
    assert.is_true(executor:running(), executor:describe())
  end

  it("that raises fails its step", function()
    check_precondition("raise", "the precondition broke on purpose")
  end)

  it("that calls os.exit fails its step", function()
    check_precondition("exit", "exit status 7")
  end)

  it("that recurses forever fails its step", function()
    check_precondition("recurse", "stack overflow")
  end)

  it("that exhausts max_memory fails its step", function()
    check_precondition("memory", "not enough memory")
  end)

  it("that hangs fails its step after 30 s", function()
    check_precondition("hang", "precondition timed out after 30 s", 180)
  end)
end)

describe("app limit", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/ledger_sleep.lua", robustness.actions.ledger_sleep)
    project:write("workflows/limited.lua", [[
return function(wf, ctx)
  for i = 1, 8 do
    wf:step("step" .. i, "ledger_sleep", { ledger = "@DIR@/ledger", seconds = 0.5 })
  end
end
]])
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  it("caps overlapping steps across two executors", function()
    local options = { "--app-limit", "limited=2", "--max-concurrent", "8" }
    local first = project:start_executor("limited", options)
    local second = project:start_executor("limited", options)
    local execution = robustness.submit(project, "limited")

    project:wait_for_attempt({ FINISHED = true, FAILED = true },
      { execution = execution, deadline = 180 })

    local status = assert(project:status(execution))
    assert.are.equal("FINISHED", status.attempt.status)
    local ledger = project:read("ledger") or ""
    local peak, starts, ends = robustness.max_overlap(
      robustness.read_ledger(project:path("ledger")))
    assert.are.equal(8, starts, ledger)
    assert.are.equal(8, ends, ledger)
    assert.is_true(peak <= 2, "up to " .. peak .. " steps of limited ran at once")
    assert.is_true(first:running(), first:describe())
    assert.is_true(second:running(), second:describe())
  end)
end)

describe("a dead executor's step", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("actions/wait_on_first_try.lua", [[
return {
  execute = function(step, ctx)
    if step.try > 1 then
      step:status("completed on try " .. step.try)
      return
    end
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local file = assert(io.open(ctx.started, "w"))
    file:write(pid, "\n")
    file:close()
    os.execute("sleep 120")
    error("the executor was never killed")
  end,
}
]])
    project:write("workflows/orphan.lua", [[
return function(wf, ctx)
  wf:step("orphan", "wait_on_first_try", { started = "@DIR@/started" },
          { retries = 1, retry_backoff = 0.1 })
end
]])
  end)

  after_each(function()
    robustness.cleanup(project)
  end)

  it("is retried and completes", function()
    local doomed = project:start_executor("orphan", { "--heartbeat-ms", "200" })
    local execution = robustness.submit(project, "orphan")
    local step_pid = read_pid(project, "started")
    local running = project:wait_for_step("orphan", "RUNNING", { execution = execution })
    local doomed_id = helper.steps_by_token(running).orphan.executor

    doomed:signal("KILL")
    assert.is_true(robustness.wait_pid_gone(step_pid, 30),
      "the step (pid " .. step_pid .. ") outlived its executor")
    local survivor = project:start_executor("orphan",
      { "--heartbeat-ms", "200", "--heartbeat-timeout-ms", "1500" })
    local status = project:wait_for_attempt({ FINISHED = true, FAILED = true },
      { execution = execution, deadline = 120 })

    assert.are.equal("FINISHED", status.attempt.status)
    local step = robustness.show_step(project, execution, "orphan")
    assert.are.equal("COMPLETED", step.status)
    assert.are.equal("completed on try 2", step.message)
    assert.are.equal("FAILED,COMPLETED", try_statuses(step))
    assert.are.equal(doomed_id, step.tries[1].executor)
    assert.are_not.equal(doomed_id, step.tries[2].executor)
    local message = step.tries[1].error or ""
    assert.is_truthy(message:find("executor", 1, true), message)
    assert.is_truthy(message:find(tostring(doomed_id), 1, true), message)
    assert.is_true(survivor:running(), survivor:describe())
  end)

  it("ends a failing attempt when its last step dies", function()
    project:write("actions/fail_after_start.lua", [[
return {
  execute = function(step, ctx)
    local give_up_at = os.time() + 60
    while not io.open(ctx.started) and os.time() < give_up_at do
      os.execute("sleep 0.05")
    end
    error("failed once the other step started")
  end,
}
]])
    -- "broken" fails while "orphan" runs, so the attempt is FAIL_PENDING.
    -- Then orphan's executor is killed and the survivor fails orphan's try
    -- with a retry still left. The failed attempt starts no retry and
    -- nothing runs any more, so the attempt must end FAILED.
    project:write("workflows/pending.lua", [[
return function(wf, ctx)
  wf:step("orphan", "wait_on_first_try", { started = "@DIR@/started" },
          { retries = 1, retry_backoff = 0.1 })
  wf:step("broken", "fail_after_start", { started = "@DIR@/started" })
end
]])
    local doomed = project:start_executor("pending", { "--heartbeat-ms", "200" })
    local execution = robustness.submit(project, "pending")
    local step_pid = read_pid(project, "started")
    project:wait_for_attempt({ FAIL_PENDING = true }, { execution = execution })

    doomed:signal("KILL")
    assert.is_true(robustness.wait_pid_gone(step_pid, 30),
      "the step (pid " .. step_pid .. ") outlived its executor")
    local survivor = project:start_executor("pending",
      { "--heartbeat-ms", "200", "--heartbeat-timeout-ms", "1500" })
    project:wait_for_status("orphan's first try is failed", function(_, steps)
      return steps.orphan and steps.orphan.status ~= "RUNNING"
    end, { execution = execution })

    local status = project:wait_for_attempt({ FAILED = true, FINISHED = true },
      { execution = execution })

    assert.are.equal("FAILED", status.attempt.status)
    assert.is_true(survivor:running(), survivor:describe())
  end)
end)
