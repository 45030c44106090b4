-- Each step runs in its own forked process: whatever kills that process
-- fails only its step, and the executor goes on.

local helper = require("helper")

-- Each case is an action that ends its process badly, and the parts that
-- the step's error message must contain.
local CASES = {
  {
    name = "a Lua error",
    action = "raise_error",
    source = [[
return {
  execute = function(step, ctx)
    error("broke on purpose")
  end,
}
]],
    expected = { "broke on purpose", "raise_error.lua:3:", "traceback" },
  },
  {
    name = "an error with a table value",
    action = "raise_table",
    source = [[
return {
  execute = function(step, ctx)
    error({ code = 7 })
  end,
}
]],
    expected = {},
  },
  {
    name = "os.exit(3)",
    action = "exit_three",
    source = [[
return {
  execute = function(step, ctx)
    os.exit(3)
  end,
}
]],
    expected = { "exit status 3" },
  },
  {
    name = "os.exit(0) before the step returns",
    action = "exit_zero",
    source = [[
return {
  execute = function(step, ctx)
    os.exit(0)
  end,
}
]],
    expected = { "exit status 0" },
  },
  {
    name = "SIGKILL sent to itself",
    action = "kill_self",
    source = [[
return {
  execute = function(step, ctx)
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    os.execute("kill -9 " .. pid)
    -- Reaching this line means the signal did not kill the process.
    error("still alive after kill -9 " .. pid)
  end,
}
]],
    expected = { "SIGKILL" },
  },
  {
    name = "a segmentation fault",
    action = "test_crash",
    context = '{ signal = "SEGV" }',
    expected = { "SIGSEGV" },
  },
  {
    name = "an abort",
    action = "test_crash",
    context = '{ signal = "ABRT" }',
    expected = { "SIGABRT" },
  },
}

-- The same hooks go to submit and executor, so test_crash is a known action
-- when the workflow is checked at submit time.
local HOOKS = { env = { BGWF_TEST_HOOKS = "1" } }

local function write_case(project, case)
  project:write("workflows/isolation.lua", ([[
return function(wf, ctx)
  wf:step("broken", %q, %s)
  wf:step("sibling", "noop", {})
end
]]):format(case.action, case.context or "{}"))
  if case.source then
    project:write("actions/" .. case.action .. ".lua", case.source)
  end
  project:write("workflows/after_crash.lua", [[
return function(wf, ctx)
  return { wf:step("later", "noop", {}) }
end
]])
end

-- Submit the case's workflow, start an executor and wait until the attempt
-- ends. Return the final status and the executor process.
local function run_case(project, case)
  write_case(project, case)
  local submitted = project:run({ "submit", "isolation" }, HOOKS)
  assert.are.equal(0, submitted.code, submitted.stderr)
  local executor = project:start_executor("isolation,after_crash", nil,
    { env = HOOKS.env, name = "executor" })
  local status = project:wait_for_attempt({ FAILED = true, FINISHED = true })
  return status, executor
end

describe("a step that dies of", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  for _, case in ipairs(CASES) do
    describe(case.name, function()
      it("fails with a message that says so", function()
        local status = run_case(project, case)

        local broken = helper.steps_by_token(status).broken
        assert.are.equal("FAILED", broken.status)
        local message = broken.error or ""
        assert.is_true(#message > 0, "the step has an error message")
        for _, part in ipairs(case.expected) do
          assert.is_truthy(message:find(part, 1, true),
            ("expected %q in the error: %s"):format(part, message))
        end
        assert.are.equal("FAILED", status.attempt.status)
      end)

      it("leaves its sibling COMPLETED", function()
        local status = run_case(project, case)

        assert.are.equal("COMPLETED", helper.steps_by_token(status).sibling.status)
      end)

      it("leaves the executor running", function()
        local _, executor = run_case(project, case)

        assert.is_true(executor:running(), "the executor still runs")
        local submitted = project:run({ "submit", "after_crash" }, HOOKS)
        assert.are.equal(0, submitted.code, submitted.stderr)
        local execution = tonumber(submitted.stdout:match("execution (%d+)"))
        assert.is_not_nil(execution, submitted.stdout)
        local status = project:wait_for_attempt({ FINISHED = true, FAILED = true },
          { execution = execution })
        assert.are.equal("FINISHED", status.attempt.status)
        assert.is_true(executor:running(), "the executor still runs")
      end)
    end)
  end
end)
