-- The read-only views: list, show, executors, graph and wait. Their JSON
-- shapes and exit codes are the documented ones.

local helper = require("helper")
local lifecycle = require("lifecycle_helper")

-- first -> middle -> last. "middle" fails until the file "flag" exists.
local CHAIN_WORKFLOW = [[
return function(wf, ctx)
  local files = { counter = "@DIR@/counter", flag = "@DIR@/flag" }
  local first = wf:step("first", "count", files)
  local middle = wf:step("middle", "needs_flag", files, { after = { first } })
  return { wf:step("last", "count", files, { after = { middle } }) }
end
]]

-- A diamond: "top" before "left" and "right", both before "bottom".
local DIAMOND_WORKFLOW = [[
return function(wf, ctx)
  local top = wf:step("top", "noop", {})
  local left = wf:step("left", "noop", {}, { after = { top } })
  local right = wf:step("right", "noop", {}, { after = { top } })
  return { wf:step("bottom", "noop", {}, { after = { left, right } }) }
end
]]

-- "slow" runs until the file "release" exists.
local HANDOFF_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("slow", "wait_for_release", {
    started = "@DIR@/started", release = "@DIR@/release",
  }) }
end
]]

local function write_chain(project)
  project:write("workflows/chain.lua", CHAIN_WORKFLOW)
  project:write("actions/count.lua", lifecycle.actions.count)
  project:write("actions/needs_flag.lua", lifecycle.actions.needs_flag)
end

local function sorted_keys(object)
  local keys = {}
  for key in pairs(object) do
    keys[#keys + 1] = key
  end
  table.sort(keys)
  return keys
end

describe("bgwf list --json", function()
  local project, listed

  -- Execution 1 (no scope) COMPLETE after two attempts, execution 2
  -- (scope "eu") with its first attempt RUNNING.
  before_each(function()
    project = helper.new_project()
    write_chain(project)
    lifecycle.submit_and_drain(project, "chain")
    project:write("flag", "")
    lifecycle.submit_and_drain(project, "chain")
    assert.are.equal(0, project:run({ "submit", "chain", "--scope", "eu" }).code)
    listed = lifecycle.run_json(project, { "list", "--json" })
  end)

  after_each(function()
    project:cleanup()
  end)

  it("lists executions newest first", function()
    assert.are.equal(2, #listed.executions)
    assert.are.equal(2, listed.executions[1].id)
    assert.are.equal(1, listed.executions[2].id)
  end)

  it("describes an ended execution", function()
    local ended = listed.executions[2]

    assert.are.same({ "app", "attempt", "attempts", "created_at", "ended_at", "id", "scope",
      "status" }, sorted_keys(ended))
    assert.are.equal("chain", ended.app)
    assert.are.equal(lifecycle.null, ended.scope)
    assert.are.equal("COMPLETE", ended.status)
    assert.are.equal(2, ended.attempts)
    assert.are.same({ id = 2, status = "FINISHED" }, ended.attempt)
    assert.are.equal("number", type(ended.created_at))
    assert.are.equal("number", type(ended.ended_at))
    assert.is_true(ended.ended_at >= ended.created_at)
  end)

  it("describes a running execution", function()
    local running = listed.executions[1]

    assert.are.equal("eu", running.scope)
    assert.are.equal("INCOMPLETE", running.status)
    assert.are.equal(1, running.attempts)
    assert.are.same({ id = 3, status = "RUNNING" }, running.attempt)
    assert.is_nil(running.ended_at)
  end)

  it("prints null for a missing scope", function()
    local result = project:run({ "list", "--json" })

    assert.is_truthy(result.stdout:find('"scope":null', 1, true), result.stdout)
  end)

  it("filters by status", function()
    local complete = lifecycle.run_json(project, { "list", "--json", "--status", "COMPLETE" })

    assert.are.equal(1, #complete.executions)
    assert.are.equal(1, complete.executions[1].id)
  end)

  it("filters by application", function()
    local other = lifecycle.run_json(project, { "list", "--json", "--app", "other" })
    local chain = lifecycle.run_json(project, { "list", "--json", "--app", "chain" })

    assert.are.equal(0, #other.executions)
    assert.are.equal(2, #chain.executions)
  end)

  it("stops at --limit", function()
    local limited = lifecycle.run_json(project, { "list", "--json", "--limit", "1" })

    assert.are.equal(1, #limited.executions)
    assert.are.equal(2, limited.executions[1].id)
  end)
end)

describe("bgwf show --json", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_chain(project)
    lifecycle.submit_and_drain(project, "chain")
    project:write("flag", "")
    assert.are.equal(0, project:run({ "submit", "chain" }).code)
  end)

  after_each(function()
    project:cleanup()
  end)

  it("contains the status object", function()
    local show_json = lifecycle.run_json(project, { "show", "1", "--json" })
    local status = lifecycle.run_json(project, { "status", "1", "--json" })

    assert.are.same(status.execution, show_json.execution)
    assert.are.same(status.attempt, show_json.attempt)
    assert.are.same(status.steps, show_json.steps)
  end)

  it("lists the attempts oldest first", function()
    local show_json = lifecycle.run_json(project, { "show", "1", "--json" })

    assert.are.equal(2, #show_json.attempts)
    local failed, running = show_json.attempts[1], show_json.attempts[2]
    assert.are.same({ "created_at", "ended_at", "id", "status", "steps" }, sorted_keys(failed))
    assert.are.equal(1, failed.id)
    assert.are.equal("FAILED", failed.status)
    assert.are.equal(3, failed.steps)
    assert.is_true(failed.ended_at >= failed.created_at)
    assert.are.equal(2, running.id)
    assert.are.equal("RUNNING", running.status)
    assert.are.equal(3, running.steps)
    assert.is_nil(running.ended_at)
  end)

  it("finds the newest execution by --app", function()
    local by_id = project:run({ "show", "1", "--json" })
    local by_app = project:run({ "show", "--app", "chain", "--json" })

    assert.are.equal(0, by_app.code, by_app.stderr)
    assert.are.equal(by_id.stdout, by_app.stdout)
  end)
end)

describe("bgwf executors --json", function()
  local project, executor

  before_each(function()
    project = helper.new_project()
    project:write("workflows/handoff.lua", HANDOFF_WORKFLOW)
    project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
    assert.are.equal(0, project:run({ "submit", "handoff" }).code)
    executor = project:start_executor("handoff", { "--heartbeat-ms", "200" })
    project:wait_for_file("started")
    project:wait_for_step("slow", "RUNNING")
  end)

  after_each(function()
    project:cleanup()
  end)

  it("describes a running executor", function()
    local listed = lifecycle.run_json(project, { "executors", "--json" })

    assert.are.equal(1, #listed.executors)
    local row = listed.executors[1]
    assert.are.same({ "apps", "heartbeat_at", "host", "id", "pid", "running_steps",
      "started_at", "status" }, sorted_keys(row))
    assert.are.equal("RUNNING", row.status)
    assert.are.equal(executor.pid, row.pid)
    assert.are.equal(helper.hostname(), row.host)
    assert.is_truthy(tostring(row.apps):find("handoff", 1, true), tostring(row.apps))
    assert.are.equal(1, row.running_steps)
    assert.is_true(row.heartbeat_at >= row.started_at)
    assert.is_nil(row.stopped_at)
  end)

  it("advances the heartbeat", function()
    local first = lifecycle.run_json(project, { "executors", "--json" }).executors[1]

    helper.wait_until("the heartbeat advances past " .. first.heartbeat_at, function()
      local row = lifecycle.run_json(project, { "executors", "--json" }).executors[1]
      return row.heartbeat_at > first.heartbeat_at
    end)
  end)

  it("describes a stopped executor", function()
    project:write("release", "")
    project:wait_for_attempt({ FINISHED = true, FAILED = true })
    executor:signal("TERM")
    assert.are.equal(0, executor:wait())

    local row = lifecycle.run_json(project, { "executors", "--json" }).executors[1]

    assert.are.equal("STOPPED", row.status)
    assert.are.equal(0, row.running_steps)
    assert.are.equal("number", type(row.stopped_at))
    assert.is_true(row.stopped_at >= row.started_at)
  end)
end)

describe("bgwf graph", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/diamond.lua", DIAMOND_WORKFLOW)
  end)

  after_each(function()
    project:cleanup()
  end)

  -- Parse the node and edge lines of DOT output.
  local function parse_dot(text)
    local nodes, edges = {}, {}
    for line in text:gmatch("[^\n]+") do
      local from, to = line:match('^%s*"([^"]+)"%s*%->%s*"([^"]+)"')
      if from then
        edges[#edges + 1] = from .. " -> " .. to
      else
        local token, label, fill = line:match(
          '^%s*"([^"]+)"%s*%[label="([^"]*)",%s*fillcolor="?([^",%]]*)"?')
        if token then
          nodes[token] = { label = label, fillcolor = fill }
        end
      end
    end
    table.sort(edges)
    return nodes, edges
  end

  it("prints steps and dependencies", function()
    assert.are.equal(0, project:run({ "submit", "diamond" }).code)

    local result = project:run({ "graph", "1" })

    assert.are.equal(0, result.code, result.stderr)
    assert.is_truthy(result.stdout:find("^digraph"), result.stdout)
    assert.is_truthy(result.stdout:find("}%s*$"), result.stdout)
    local nodes, edges = parse_dot(result.stdout)
    assert.are.same({ "bottom", "left", "right", "top" }, sorted_keys(nodes))
    assert.are.same({
      "left -> bottom", "right -> bottom", "top -> left", "top -> right",
    }, edges)
  end)

  it("labels each node with its token and status", function()
    assert.are.equal(0, project:run({ "submit", "diamond" }).code)
    local waiting = parse_dot(project:run({ "graph", "1" }).stdout)
    local executor = project:start_executor("diamond", { "--exit-when-idle" })
    assert.are.equal(0, executor:wait(120))

    local finished = parse_dot(project:run({ "graph", "1" }).stdout)

    assert.are.equal("top\\nWAITING", waiting.top.label)
    assert.are.equal("bottom\\nCOMPLETED", finished.bottom.label)
    assert.is_truthy(waiting.top.fillcolor ~= "", "a WAITING node has a fill colour")
    assert.are_not.equal(waiting.top.fillcolor, finished.top.fillcolor)
  end)
end)

describe("bgwf wait", function()
  local project

  before_each(function()
    project = helper.new_project()
    write_chain(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  it("exits 0 when the attempt FINISHED", function()
    project:write("flag", "")
    assert.are.equal(0, project:run({ "submit", "chain" }).code)
    project:start_executor("chain")

    local result = project:run({ "wait", "1", "--poll-ms", "100" })

    assert.are.equal(0, result.code, result.stdout .. result.stderr)
    assert.are.equal("FINISHED", assert(project:status(1)).attempt.status)
  end)

  it("exits 1 when the attempt FAILED", function()
    assert.are.equal(0, project:run({ "submit", "chain" }).code)
    project:start_executor("chain")

    local result = project:run({ "wait", "1", "--poll-ms", "100" })

    assert.are.equal(1, result.code, result.stdout .. result.stderr)
    assert.are.equal("FAILED", assert(project:status(1)).attempt.status)
  end)

  it("exits 1 when the attempt was SHUTDOWN", function()
    assert.are.equal(0, project:run({ "submit", "chain" }).code)
    assert.are.equal(0, project:run({ "shutdown", "1" }).code)

    local result = project:run({ "wait", "1", "--timeout", "30" })

    assert.are.equal(1, result.code, result.stdout .. result.stderr)
    assert.are.equal("SHUTDOWN", assert(project:status(1)).attempt.status)
  end)

  it("exits 1 when a step was reverted after the attempt finished", function()
    project:write("flag", "")
    lifecycle.submit_and_drain(project, "chain")
    assert.are.equal(0, project:run({ "revert", "1", "last" }).code)

    local result = project:run({ "wait", "1", "--timeout", "30" })

    assert.are.equal(1, result.code, result.stdout .. result.stderr)
    assert.is_truthy(result.stdout:find("execution 1 is INCOMPLETE", 1, true), result.stdout)
    assert.are.equal("FINISHED", assert(project:status(1)).attempt.status)
  end)

  it("exits 1 when the execution was CANCELLED", function()
    project:write("flag", "")
    lifecycle.submit_and_drain(project, "chain")
    assert.are.equal(0, project:run({ "revert", "1", "last" }).code)
    assert.are.equal(0, project:run({ "cancel", "1" }).code)

    local result = project:run({ "wait", "1", "--timeout", "30" })

    assert.are.equal(1, result.code, result.stdout .. result.stderr)
    assert.is_truthy(result.stdout:find("execution 1 is CANCELLED", 1, true), result.stdout)
  end)

  it("exits 3 when the timeout passes first", function()
    assert.are.equal(0, project:run({ "submit", "chain" }).code)

    local result = project:run({ "wait", "1", "--timeout", "1" })

    assert.are.equal(3, result.code, result.stdout .. result.stderr)
    assert.are.equal("RUNNING", assert(project:status(1)).attempt.status)
  end)

  it("exits 1 on an unknown execution", function()
    assert.are.equal(0, project:run({ "submit", "chain" }).code)
    local result = project:run({ "wait", "99", "--timeout", "1" })

    assert.are.equal(1, result.code, result.stdout .. result.stderr)
    assert.is_truthy(result.stderr:find("^bgwf: .*99"), result.stderr)
  end)
end)
