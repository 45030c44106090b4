-- Resources: named JSON values that one step writes with step:set and a
-- later step reads with step:get. They belong to the execution, so a
-- resumed attempt reads what an earlier attempt stored, and a step that
-- fails stores nothing.

local helper = require("helper")
local observability = require("observability_helper")

-- "write" stores ctx.value in the resource ctx.resource. "read" stores
-- what it gets, encoded as JSON with the Lua type of every number, in the
-- file ctx.out, and shows the encoded value as its status message.
local WRITE_ACTION = [[
return {
  execute = function(step, ctx)
    step:set(ctx.resource, ctx.value)
  end,
}
]]

local READ_ACTION = [[
local json = require("bgwf.json")

local function number_types(value, types, path)
  if type(value) == "table" then
    local keys = {}
    for key in pairs(value) do
      keys[#keys + 1] = key
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, key in ipairs(keys) do
      number_types(value[key], types, path .. "." .. tostring(key))
    end
  elseif type(value) == "number" then
    types[#types + 1] = path .. "=" .. math.type(value)
  end
  return types
end

return {
  execute = function(step, ctx)
    local value = step:get(ctx.resource)
    local file = assert(io.open(ctx.out, "w"))
    file:write(json.encode({
      value = value,
      types = table.concat(number_types(value, {}, "value"), " "),
    }))
    file:close()
    step:status(json.encode(value))
  end,
}
]]

-- "producer" writes a table through a resource handle; "consumer" runs
-- after it and reads the same handle.
local PASS_WORKFLOW = [[
return function(wf, ctx)
  local report = wf:resource("report")
  local producer = wf:step("producer", "write", {
    resource = report,
    value = { rows = 42, ratio = 0.5, name = "daily", tags = { "a", "b" },
              nested = { ok = true, big = 1099511627776 } },
  })
  return { wf:step("consumer", "read", { resource = report, out = "@DIR@/consumer.json" },
                   { after = { producer } }) }
end
]]

-- The same, but both steps name the resource by a plain string.
local BY_NAME_WORKFLOW = [[
return function(wf, ctx)
  local producer = wf:step("producer", "write", { resource = "count", value = 7 })
  return { wf:step("consumer", "read", { resource = "count", out = "@DIR@/consumer.json" },
                   { after = { producer } }) }
end
]]

-- "first" writes total = 7 and counts its runs in the file "first_runs";
-- "second" fails while the file "broken" exists, and otherwise reads total.
local RESUME_WORKFLOW = [[
return function(wf, ctx)
  local total = wf:resource("total")
  local first = wf:step("first", "count_and_write", {
    resource = total, value = 7, runs = "@DIR@/first_runs",
  })
  return { wf:step("second", "read_unless_broken", {
    resource = total, broken = "@DIR@/broken", out = "@DIR@/second.json",
  }, { after = { first } }) }
end
]]

local COUNT_AND_WRITE_ACTION = [[
return {
  execute = function(step, ctx)
    local file = assert(io.open(ctx.runs, "a"))
    file:write(step.attempt, "\n")
    file:close()
    step:set(ctx.resource, ctx.value)
  end,
}
]]

local READ_UNLESS_BROKEN_ACTION = [[
local json = require("bgwf.json")

return {
  execute = function(step, ctx)
    local flag = io.open(ctx.broken, "r")
    if flag then
      flag:close()
      error("the file " .. ctx.broken .. " exists")
    end
    local value = step:get(ctx.resource)
    local file = assert(io.open(ctx.out, "w"))
    file:write(json.encode({ value = value, type = math.type(value) }))
    file:close()
    step:status("read " .. tostring(value))
  end,
}
]]

-- "seed" writes total = 1. While the file "broken" exists, "update" writes
-- total = 99 and extra = "lost", checks that it reads back its own write,
-- and fails; otherwise it reports what it reads of both.
local DISCARD_WORKFLOW = [[
return function(wf, ctx)
  local total = wf:resource("total")
  local extra = wf:resource("extra")
  local seed = wf:step("seed", "write", { resource = total, value = 1 })
  return { wf:step("update", "write_then_fail", {
    total = total, extra = extra, broken = "@DIR@/broken",
  }, { after = { seed } }) }
end
]]

local WRITE_THEN_FAIL_ACTION = [[
return {
  execute = function(step, ctx)
    local flag = io.open(ctx.broken, "r")
    if flag then
      flag:close()
      step:set(ctx.total, 99)
      step:set(ctx.extra, "lost")
      error("failing after writing; own total reads " .. tostring(step:get(ctx.total)))
    end
    local ok, problem = pcall(step.get, step, ctx.extra)
    local extra = ok and tostring(problem) or "unreadable"
    step:status("total=" .. tostring(step:get(ctx.total)) .. " extra=" .. extra)
  end,
}
]]

-- "seed" writes total = 1. Then "reader" and "writer" run at once: "reader"
-- starts, waits for the file "release", and reads total; "writer" writes
-- total = 2 meanwhile.
local SNAPSHOT_WORKFLOW = [[
return function(wf, ctx)
  local total = wf:resource("total")
  local seed = wf:step("seed", "write", { resource = total, value = 1 })
  local reader = wf:step("reader", "wait_then_read", {
    resource = total, started = "@DIR@/reader_started", release = "@DIR@/release",
  }, { after = { seed } })
  local writer = wf:step("writer", "write", { resource = total, value = 2 },
                         { after = { seed } })
  return { reader, writer }
end
]]

local WAIT_THEN_READ_ACTION = [[
local function exists(path)
  local file = io.open(path, "r")
  if file then file:close() return true end
  return false
end

return {
  execute = function(step, ctx)
    local started = assert(io.open(ctx.started, "w"))
    started:close()
    local give_up_at = os.time() + 120
    while not exists(ctx.release) do
      if os.time() > give_up_at then
        error("the release file " .. ctx.release .. " never appeared")
      end
      os.execute("sleep 0.05")
    end
    step:status("read " .. tostring(step:get(ctx.resource)))
  end,
}
]]

-- "reader" reads a resource that no step writes; "storer" writes a table
-- that contains a function.
local INVALID_USE_WORKFLOW = [[
return function(wf, ctx)
  local reader = wf:step("reader", "read", {
    resource = wf:resource("never_written"), out = "@DIR@/reader.json",
  })
  local storer = wf:step("storer", "store_function", { resource = wf:resource("callback") })
  return { reader, storer }
end
]]

local STORE_FUNCTION_ACTION = [[
return {
  execute = function(step, ctx)
    step:set(ctx.resource, { handler = function() end })
  end,
}
]]

local function new_project()
  local project = helper.new_project()
  project:write("actions/write.lua", WRITE_ACTION)
  project:write("actions/read.lua", READ_ACTION)
  return project
end

describe("resources", function()
  local project

  before_each(function()
    project = new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("passed from one step to a later one", function()
    it("give the reader the stored value", function()
      project:write("workflows/pass.lua", PASS_WORKFLOW)

      observability.run_ok(project, { "run", "pass", "--poll-ms", "50" })

      local read = observability.decode(project:read("consumer.json"), "consumer.json")
      assert.are.same({
        rows = 42, ratio = 0.5, name = "daily", tags = { "a", "b" },
        nested = { ok = true, big = 1099511627776 },
      }, read.value)
    end)

    it("keep integers as integers", function()
      project:write("workflows/pass.lua", PASS_WORKFLOW)

      observability.run_ok(project, { "run", "pass", "--poll-ms", "50" })

      local read = observability.decode(project:read("consumer.json"), "consumer.json")
      assert.are.equal(
        "value.nested.big=integer value.ratio=float value.rows=integer",
        read.types)
    end)

    it("accept a plain name in place of a handle", function()
      project:write("workflows/by_name.lua", BY_NAME_WORKFLOW)

      observability.run_ok(project, { "run", "by_name", "--poll-ms", "50" })

      local read = observability.decode(project:read("consumer.json"), "consumer.json")
      assert.are.equal(7, read.value)
      assert.are.equal("value=integer", read.types)
    end)
  end)

  describe("written before a resumed attempt", function()
    before_each(function()
      project:write("workflows/resume.lua", RESUME_WORKFLOW)
      project:write("actions/count_and_write.lua", COUNT_AND_WRITE_ACTION)
      project:write("actions/read_unless_broken.lua", READ_UNLESS_BROKEN_ACTION)
    end)

    it("are read by the next attempt after a skipped step", function()
      project:write("broken", "")
      local first_run = project:run({ "run", "resume", "--poll-ms", "50" })
      assert.are.equal(1, first_run.code, first_run.stderr)
      local failed = helper.steps_by_token(assert(project:status()))
      assert.are.equal("COMPLETED", failed.first.status)
      assert.are.equal("FAILED", failed.second.status)

      os.remove(project:path("broken"))
      observability.run_ok(project, { "submit", "resume" })
      local executor = project:start_executor("resume", { "--exit-when-idle" })
      assert.are.equal(0, executor:wait(120), executor:describe())

      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("SKIPPED", steps.first.status)
      assert.are.equal("COMPLETED", steps.second.status)
      assert.are.equal("read 7", steps.second.message)
      local read = observability.decode(project:read("second.json"), "second.json")
      assert.are.equal(7, read.value)
      assert.are.equal("integer", read.type)
    end)

    it("are not written again by the skipped step", function()
      project:write("broken", "")
      local first_run = project:run({ "run", "resume", "--poll-ms", "50" })
      assert.are.equal(1, first_run.code, first_run.stderr)

      os.remove(project:path("broken"))
      observability.run_ok(project, { "submit", "resume" })
      local executor = project:start_executor("resume", { "--exit-when-idle" })
      assert.are.equal(0, executor:wait(120), executor:describe())

      local runs = project:lines("first_runs")
      assert.are.equal(1, #runs, table.concat(runs, ", "))
    end)
  end)

  describe("written by a step that then fails", function()
    before_each(function()
      project:write("workflows/discard.lua", DISCARD_WORKFLOW)
      project:write("actions/write_then_fail.lua", WRITE_THEN_FAIL_ACTION)
      project:write("broken", "")
    end)

    it("are visible to that step before it fails", function()
      local result = project:run({ "run", "discard", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("FAILED", steps.update.status)
      local message = steps.update.error or ""
      assert.is_truthy(message:find("own total reads 99", 1, true), message)
    end)

    it("are discarded", function()
      local result = project:run({ "run", "discard", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      os.remove(project:path("broken"))
      observability.run_ok(project, { "submit", "discard" })
      local executor = project:start_executor("discard", { "--exit-when-idle" })
      assert.are.equal(0, executor:wait(120), executor:describe())

      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("total=1 extra=unreadable", steps.update.message)
    end)
  end)

  describe("written while another step runs", function()
    it("stay unseen by the step that started before", function()
      project:write("workflows/snapshot.lua", SNAPSHOT_WORKFLOW)
      project:write("actions/wait_then_read.lua", WAIT_THEN_READ_ACTION)
      observability.run_ok(project, { "submit", "snapshot" })
      project:start_executor("snapshot")

      project:wait_for_file("reader_started")
      project:wait_for_step("writer", "COMPLETED")
      project:write("release", "")
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })

      local steps = helper.steps_by_token(status)
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("read 1", steps.reader.message)
    end)
  end)

  describe("used wrongly", function()
    before_each(function()
      project:write("workflows/invalid_use.lua", INVALID_USE_WORKFLOW)
      project:write("actions/store_function.lua", STORE_FUNCTION_ACTION)
    end)

    it("fail a step that reads a resource never written", function()
      local result = project:run({ "run", "invalid_use", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local status = assert(project:status())
      local steps = helper.steps_by_token(status)
      assert.are.equal("FAILED", steps.reader.status)
      local expected = ("resource 'never_written' was never written in execution %d;")
        :format(status.execution.id)
      local message = steps.reader.error or ""
      assert.is_truthy(message:find(expected, 1, true), message)
      assert.is_truthy(message:find("read.lua:", 1, true), message)
      assert.is_falsy(project:exists("reader.json"))
    end)

    it("fail a step that stores a function", function()
      local result = project:run({ "run", "invalid_use", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("FAILED", steps.storer.status)
      local expected = "resource 'callback' cannot be stored: the value is not JSON-serializable at "
      local message = steps.storer.error or ""
      assert.is_truthy(message:find(expected, 1, true), message)
      assert.is_truthy(message:find("store_function.lua:", 1, true), message)
    end)
  end)
end)
