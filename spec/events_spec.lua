-- Events: the engine stores an event when an attempt starts, succeeds,
-- fails or shuts down, and when a step succeeds or fails. `bgwf events`
-- lists them; `bgwf notify` subscribes a command or an action to an
-- application's events, and the executor delivers them.

local helper = require("helper")
local observability = require("observability_helper")

-- "first" passes; "second" fails while the file "broken" exists.
local FLAKY_WORKFLOW = [[
return function(wf, ctx)
  local first = wf:step("first", "noop", {})
  return { wf:step("second", "fail_if_broken", { broken = "@DIR@/broken" },
                   { after = { first } }) }
end
]]

local FAIL_IF_BROKEN_ACTION = [[
return {
  execute = function(step, ctx)
    local flag = io.open(ctx.broken, "r")
    if flag then
      flag:close()
      error("the file " .. ctx.broken .. " exists")
    end
  end,
}
]]

-- Write the event it receives as context, as JSON, to DIR/action_TYPE.json,
-- and print a line to its log.
local RECORD_EVENT_ACTION = [[
local json = require("bgwf.json")

return {
  execute = function(step, ctx)
    print("received " .. tostring(ctx.type))
    local file = assert(io.open("@DIR@/action_" .. tostring(ctx.type) .. ".json", "w"))
    file:write(json.encode(ctx))
    file:close()
  end,
}
]]

-- A command that saves its stdin and its BGWF_ variables per event type.
local RECORD_COMMAND = "cat > @DIR@/stdin_$BGWF_EVENT.json;"
  .. " env | grep '^BGWF_' | grep -v '^BGWF_EVENT_JSON=' | sort > @DIR@/env_$BGWF_EVENT.txt;"
  .. " printf '%s' \"$BGWF_EVENT_JSON\" > @DIR@/variable_$BGWF_EVENT.json"

local function new_project()
  local project = helper.new_project()
  project:write("workflows/flaky.lua", FLAKY_WORKFLOW)
  project:write("actions/fail_if_broken.lua", FAIL_IF_BROKEN_ACTION)
  return project
end

local function in_project(project, text)
  return (text:gsub("@DIR@", function() return project.dir end))
end

-- Read the lines "NAME=value" of a file into a table.
local function read_variables(project, relative)
  local variables = {}
  for _, line in ipairs(project:lines(relative)) do
    local name, value = line:match("^([%w_]+)=(.*)$")
    if name then
      variables[name] = value
    end
  end
  return variables
end

describe("events", function()
  local project

  before_each(function()
    project = new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("delivered to a subscribed command", function()
    local status

    before_each(function()
      observability.run_ok(project, { "notify", "flaky", "--on", "STEP_FAILURE,FAILURE",
        "--command", in_project(project, RECORD_COMMAND) })
      project:write("broken", "")
      local result = project:run({ "run", "flaky", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)
      status = assert(project:status())
      project:wait_for_file("stdin_STEP_FAILURE.json")
      project:wait_for_file("stdin_FAILURE.json")
    end)

    it("get STEP_FAILURE as JSON on stdin", function()
      local event = observability.decode(project:read("stdin_STEP_FAILURE.json"), "stdin")

      assert.are.equal("STEP_FAILURE", event.type)
      assert.are.equal("flaky", event.app)
      assert.are.equal(status.execution.id, event.execution)
      assert.are.equal(status.attempt.id, event.attempt)
      assert.are.equal("second", event.step)
      assert.are.equal(helper.steps_by_token(status).second.executor, event.executor)
      assert.is_string(event.detail)
      assert.is_truthy(event.detail:find("fail_if_broken.lua:6: the file ", 1, true), event.detail)
      assert.is_truthy(math.type(event.id) == "integer", tostring(event.id))
      assert.is_truthy(math.type(event.at) == "integer", tostring(event.at))
    end)

    it("get FAILURE as JSON on stdin", function()
      local event = observability.decode(project:read("stdin_FAILURE.json"), "stdin")

      assert.are.equal("FAILURE", event.type)
      assert.are.equal("flaky", event.app)
      assert.are.equal(status.execution.id, event.execution)
      assert.are.equal(status.attempt.id, event.attempt)
      assert.is_nil(event.step)
    end)

    it("get the same JSON in BGWF_EVENT_JSON", function()
      for _, event_type in ipairs({ "STEP_FAILURE", "FAILURE" }) do
        local from_stdin = observability.decode(project:read("stdin_" .. event_type .. ".json"), "stdin")
        local from_variable = observability.decode(
          project:read("variable_" .. event_type .. ".json"), "BGWF_EVENT_JSON")
        assert.are.same(from_stdin, from_variable)
      end
    end)

    it("get the event's ids in variables", function()
      local step_failure = read_variables(project, "env_STEP_FAILURE.txt")
      local failure = read_variables(project, "env_FAILURE.txt")

      assert.are.equal("STEP_FAILURE", step_failure.BGWF_EVENT)
      assert.are.equal("flaky", step_failure.BGWF_APP)
      assert.are.equal(tostring(status.execution.id), step_failure.BGWF_EXECUTION)
      assert.are.equal(tostring(status.attempt.id), step_failure.BGWF_ATTEMPT)
      assert.are.equal("second", step_failure.BGWF_STEP)
      assert.are.equal("FAILURE", failure.BGWF_EVENT)
      assert.are.equal("flaky", failure.BGWF_APP)
      assert.are.equal(tostring(status.attempt.id), failure.BGWF_ATTEMPT)
    end)

    it("are not delivered for types not subscribed", function()
      assert.is_falsy(project:exists("stdin_START.json"))
      assert.is_falsy(project:exists("stdin_STEP_SUCCESS.json"))
    end)
  end)

  describe("delivered to a subscribed action", function()
    it("are the action's context", function()
      project:write("actions/record_event.lua", in_project(project, RECORD_EVENT_ACTION))
      observability.run_ok(project,
        { "notify", "flaky", "--on", "STEP_FAILURE", "--action", "record_event" })
      project:write("broken", "")
      local result = project:run({ "run", "flaky", "--poll-ms", "50" })
      assert.are.equal(1, result.code, result.stderr)
      local status = assert(project:status())

      project:wait_for_file("action_STEP_FAILURE.json")
      local context = observability.decode(project:read("action_STEP_FAILURE.json"), "the context")
      assert.are.equal("STEP_FAILURE", context.type)
      assert.are.equal("flaky", context.app)
      assert.are.equal(status.execution.id, context.execution)
      assert.are.equal(status.attempt.id, context.attempt)
      assert.are.equal("second", context.step)
      assert.is_truthy(context.detail:find("fail_if_broken.lua:6: the file ", 1, true), context.detail)
    end)
  end)

  describe("delivered to a command that fails", function()
    it("leave the attempt FINISHED and are retried", function()
      project:write("tries", "")
      local subscribed = observability.run_ok(project, { "notify", "flaky", "--on", "SUCCESS",
        "--command", in_project(project, "echo try >> @DIR@/tries; exit 1") })
      local subscription = subscribed.stdout:match("subscription (%d+)")
      assert.is_truthy(subscription, subscribed.stdout)
      observability.run_ok(project, { "submit", "flaky" })
      local executor = project:start_executor("flaky")

      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETE", status.execution.status)
      -- Tries are 5 s and then 10 s apart, so the third comes after 15 s.
      helper.wait_until("the command ran 3 times", function()
        return #project:lines("tries") >= 3
      end, 120, function() return executor:describe() end)
      local given_up = ("notification %s (SUCCESS) failed 3 times"):format(subscription)
      helper.wait_until("the executor logs that it gave up", function()
        return executor:stderr():find(given_up, 1, true)
      end, 60, function() return executor:describe() end)

      local log = executor:stderr()
      local retry = ("notification %s (SUCCESS) failed on try 1, will retry"):format(subscription)
      assert.is_truthy(log:find(retry, 1, true), log)
      assert.is_truthy(log:find("exited with status 1", 1, true), log)
      assert.are.equal(3, #project:lines("tries"))
      local after = assert(project:status())
      assert.are.equal("FINISHED", after.attempt.status)
      assert.are.equal("COMPLETE", after.execution.status)
    end)

    it("leave bgwf run exiting 0", function()
      observability.run_ok(project, { "notify", "flaky", "--on", "SUCCESS,STEP_SUCCESS",
        "--command", "exit 1" })

      local result = project:run({ "run", "flaky", "--poll-ms", "50" })

      assert.are.equal(0, result.code, result.stderr)
      assert.is_truthy(result.stderr:find("failed on try 1", 1, true), result.stderr)
    end)
  end)

  describe("listed by bgwf events --json", function()
    local status, listed

    before_each(function()
      project:write("broken", "")
      local failing = project:run({ "run", "flaky", "--poll-ms", "50" })
      assert.are.equal(1, failing.code, failing.stderr)
      os.remove(project:path("broken"))
      observability.run_ok(project, { "run", "flaky", "--poll-ms", "50" })
      status = assert(project:status())
      listed = observability.run_json(project, { "events", "--json" })
    end)

    it("have the documented fields", function()
      assert.is_table(listed.events)
      local allowed = {
        id = true, type = true, at = true, app = true, execution = true,
        attempt = true, step = true, executor = true, detail = true,
      }
      for _, event in ipairs(listed.events) do
        for key in pairs(event) do
          assert.is_truthy(allowed[key], "unexpected field " .. tostring(key))
        end
        assert.are.equal("integer", math.type(event.id))
        assert.are.equal("integer", math.type(event.at))
        assert.are.equal("flaky", event.app)
        assert.are.equal(status.execution.id, event.execution)
        assert.are.equal("integer", math.type(event.attempt))
      end
    end)

    it("come oldest first with each type in order", function()
      local seen = {}
      for i, event in ipairs(listed.events) do
        seen[i] = event.type .. (event.step and (" " .. event.step) or "")
        if i > 1 then
          assert.is_true(event.id > listed.events[i - 1].id)
        end
      end

      assert.are.same({
        "START", "STEP_SUCCESS first", "STEP_FAILURE second", "FAILURE",
        "START", "STEP_SUCCESS second", "SUCCESS",
      }, seen)
    end)

    it("name the step's executor and error", function()
      local failure
      for _, event in ipairs(listed.events) do
        if event.type == "STEP_FAILURE" then
          failure = event
        end
      end

      assert.is_table(failure)
      assert.are.equal("second", failure.step)
      assert.are.equal("integer", math.type(failure.executor))
      assert.is_truthy(failure.detail:find("fail_if_broken.lua:6: the file ", 1, true), failure.detail)
      assert.are.equal(status.attempt.id - 1, failure.attempt)
    end)

    it("filter with --app, --since and --limit", function()
      local other_app = observability.run_json(project, { "events", "--app", "other", "--json" })
      local after_fourth = observability.run_json(project,
        { "events", "--since", tostring(listed.events[4].id), "--json" })
      local last_two = observability.run_json(project, { "events", "--limit", "2", "--json" })

      assert.are.same({}, other_app.events)
      assert.are.same({ listed.events[5], listed.events[6], listed.events[7] }, after_fourth.events)
      local count = #listed.events
      assert.are.same({ listed.events[count - 1], listed.events[count] }, last_two.events)
    end)
  end)

  describe("subscriptions of bgwf notify", function()
    it("are listed and removed", function()
      observability.run_ok(project, { "notify", "flaky", "--on", "SUCCESS,FAILURE",
        "--command", "true" })

      local before = observability.run_json(project, { "notify", "flaky", "--list", "--json" })
      assert.are.equal(1, #before.subscriptions)
      local subscription = before.subscriptions[1]
      assert.are.equal("flaky", subscription.app)
      assert.are.equal("SUCCESS,FAILURE", subscription.events)
      assert.are.equal("true", subscription.command)
      assert.are.equal("integer", math.type(subscription.id))

      observability.run_ok(project, { "notify", "flaky", "--remove", tostring(subscription.id) })

      local after = observability.run_json(project, { "notify", "flaky", "--list", "--json" })
      assert.are.same({}, after.subscriptions)
    end)

    it("stop delivering once removed", function()
      local subscribed = observability.run_ok(project, { "notify", "flaky", "--on", "SUCCESS",
        "--command", in_project(project, "touch @DIR@/delivered") })
      local id = subscribed.stdout:match("subscription (%d+)")
      assert.is_truthy(id, subscribed.stdout)
      observability.run_ok(project, { "notify", "flaky", "--remove", id })
      observability.run_ok(project, { "notify", "flaky", "--on", "SUCCESS",
        "--command", in_project(project, "touch @DIR@/kept") })

      observability.run_ok(project, { "run", "flaky", "--poll-ms", "50" })

      project:wait_for_file("kept")
      assert.is_falsy(project:exists("delivered"))
    end)

    it("reject an unknown event type with exit 2", function()
      local result = project:run({ "notify", "flaky", "--on", "SUCCESS,FINISHED",
        "--command", "true" })

      assert.are.equal(2, result.code, result.stdout .. result.stderr)
      assert.is_truthy(result.stderr:find("FINISHED", 1, true), result.stderr)
      local listed = observability.run_json(project, { "notify", "flaky", "--list", "--json" })
      assert.are.same({}, listed.subscriptions)
    end)
  end)
end)
