-- The built-in native actions sleep and wait_for_file, which exist without
-- any file under actions/.

local helper = require("helper")

describe("the sleep action", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/nap.lua", [[
return function(wf, ctx)
  return { wf:step("nap", "sleep", { seconds = ctx.seconds }) }
end
]])
  end)

  after_each(function()
    project:cleanup()
  end)

  it("completes after a short sleep", function()
    local result = project:run({ "run", "nap", "--poll-ms", "50", "--context", '{"seconds": 0.1}' })

    assert.are.equal(0, result.code, result.stderr)
    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("COMPLETED", steps.nap.status)
  end)

  it("fails without seconds in its context", function()
    local result = project:run({ "run", "nap", "--poll-ms", "50" })

    assert.are.equal(1, result.code)
    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("sleep: ctx.seconds must be a number of seconds, not nil",
                     (steps.nap.error or ""):match("^[^\n]*"))
  end)

  it("ends on SIGTERM to its process group", function()
    local executor = project:start_executor("nap")
    local submitted = project:run({ "submit", "nap", "--context", '{"seconds": 3600}' })
    assert.are.equal(0, submitted.code, submitted.stderr)
    project:wait_for_step("nap", "RUNNING")
    local pid = helper.wait_until("the executor logs the step's pid", function()
      return tonumber(executor:stderr():match("step=nap try=1 started pid=(%d+)"))
    end)

    helper.shell(("/bin/kill -s TERM -- -%d"):format(pid))

    local status = project:wait_for_step("nap", "FAILED")
    local steps = helper.steps_by_token(status)
    assert.are.equal("step process was killed by signal SIGTERM (Terminated)", steps.nap.error)
    assert.is_true(executor:running())
  end)
end)

describe("the wait_for_file action", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/watch.lua", [[
return function(wf, ctx)
  return { wf:step("watch", "wait_for_file", ctx, { cooldown = 0.05 }) }
end
]])
  end)

  after_each(function()
    project:cleanup()
  end)

  local function submit_watch(context)
    local submitted = project:run({ "submit", "watch", "--context", context })
    assert.are.equal(0, submitted.code, submitted.stderr)
  end

  it("waits until the path exists", function()
    local target = project:path("ready.flag")
    project:start_executor("watch")
    submit_watch('{"path": "' .. target .. '"}')
    -- Several precondition checks (cooldown 0.05 s) find no file meanwhile.
    helper.sleep(0.5)
    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("WAITING", steps.watch.status)

    project:write("ready.flag", "")

    local status = project:wait_for_step("watch", "COMPLETED")
    assert.are.equal("found " .. target, helper.steps_by_token(status).watch.message)
  end)

  it("waits for content with non_empty", function()
    local target = project:path("data.csv")
    project:write("data.csv", "")
    project:start_executor("watch")
    submit_watch('{"path": "' .. target .. '", "non_empty": true}')
    helper.sleep(0.5)
    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("WAITING", steps.watch.status)

    project:write("data.csv", "a,b\n")

    project:wait_for_step("watch", "COMPLETED")
  end)

  it("fails without a path", function()
    project:start_executor("watch")
    submit_watch("{}")

    local status = project:wait_for_step("watch", "FAILED")
    local message = helper.steps_by_token(status).watch.error or ""
    assert.is_truthy(message:find("wait_for_file: ctx.path must be a non-empty string", 1, true),
                     message)
  end)
end)
