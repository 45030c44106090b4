-- The bgwf Lua module, require "bgwf" from plain lua5.4: opening a store,
-- submitting workflows, reading their status, the precondition helpers, and
-- installing it with LuaRocks.

local helper = require("helper")

local build_folder = helper.bin:match("^(.*)/[^/]*$")

-- Run Lua source with lua5.4 in the project folder, finding the module in
-- cpath (default: the build folder). Returns code, stdout, stderr.
local function run_lua(project, source, cpath)
  project.runs = project.runs + 1
  local prefix = ("%s/lua%d"):format(project.scratch, project.runs)
  local script = project:write((".spec/lua%d.lua"):format(project.runs), source)
  local code = helper.shell(("cd %s && env -u BGWF_DB -u BGWF_PATH LUA_CPATH=%s LUA_PATH=';;' "
    .. "timeout -k 10 %d lua5.4 %s >%s 2>%s </dev/null"):format(
    helper.quote(project.dir), helper.quote(cpath or (build_folder .. "/lua/?.so")),
    helper.COMMAND_TIMEOUT, helper.quote(script), helper.quote(prefix .. ".out"),
    helper.quote(prefix .. ".err")))
  return code, helper.read_file(prefix .. ".out") or "", helper.read_file(prefix .. ".err") or ""
end

local PAIR = [[
return function(wf, ctx)
  local first = wf:step("first", "noop", {})
  return { wf:step("second", "noop", { message = ctx.message }, { after = { first } }) }
end
]]

describe("the bgwf module", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/pair.lua", PAIR)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("submitting by name", function()
    it("stores a workflow that an executor then runs", function()
      local code, out, err = run_lua(project, [[
local bgwf = require("bgwf")
local store <close> = assert(bgwf.open("@DB@", { path = "@DIR@" }))
local execution, attempt, details = store:submit("pair", { context = { message = "hi" } })
print(execution, attempt, details.resumed, details.attempt_status)
]])
      assert.are.equal(0, code, err)
      assert.are.equal("1\t1\tfalse\tRUNNING\n", out)

      local executor = project:start_executor("pair", { "--exit-when-idle" })

      assert.are.equal(0, executor:wait(120))
      local status = assert(project:status())
      assert.are.equal("COMPLETE", status.execution.status)
      assert.are.same({ "first", "second" }, helper.tokens(status))
    end)

    it("reads the status the executor left", function()
      assert.are.equal(0, project:run({ "run", "pair", "--poll-ms", "50" }).code)

      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@"))
local report = assert(store:status())
print(report.execution.id, report.execution.app, report.execution.status, report.attempt.status)
for _, step in ipairs(assert(store:steps(1))) do
  print(step.token, step.action, step.status, step.try, step.executor ~= nil)
end
]])

      assert.are.equal(0, code, err)
      assert.are.equal("1\tpair\tCOMPLETE\tFINISHED\n"
                       .. "first\tnoop\tCOMPLETED\t1\ttrue\n"
                       .. "second\tnoop\tCOMPLETED\t1\ttrue\n", out)
    end)

    it("returns nil and a message for a missing workflow", function()
      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@", { path = "@DIR@" }))
print(store:submit("absent"))
]])

      assert.are.equal(0, code, err)
      assert.are.equal("nil\tworkflow 'absent' not found: no workflows/absent.lua in "
                       .. project.dir .. " (set the search path with --path or BGWF_PATH)\n", out)
      assert.are.equal(0, project:stored_rows())
    end)

    it("returns nil and a message for an unknown execution", function()
      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@"))
print(store:status(42))
]])

      assert.are.equal(0, code, err)
      assert.are.equal("nil\texecution 42 not found in " .. project.db .. "\n", out)
    end)
  end)

  describe("running the manual operations", function()
    it("reverts, completes and cancels through the store", function()
      assert.are.equal(0, project:run({ "run", "pair", "--poll-ms", "50" }).code)

      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@"))
local changes = assert(store:revert(1, "first", { downstream = true }))
for _, step in ipairs(changes.steps) do print(step.token, step.from, step.to) end
print(changes.execution_from, changes.execution_to)
print(store:revert(1, "nope"))
changes = assert(store:complete(1, "first"))
print(changes.steps[1].token, changes.steps[1].to)
changes = assert(store:cancel(1))
print(changes.execution_to)
print(store:shutdown(1))
]])

      assert.are.equal(0, code, err)
      assert.are.equal("first\tCOMPLETED\tREVERTED\n"
                       .. "second\tCOMPLETED\tREVERTED\n"
                       .. "COMPLETE\tINCOMPLETE\n"
                       .. "nil\texecution 1 has no step 'nope' in attempt 1: see 'bgwf show 1' "
                       .. "for its steps\n"
                       .. "first\tMANUALLY_COMPLETED\n"
                       .. "CANCELLED\n"
                       .. "nil\tattempt 1 of execution 1 is FINISHED, not RUNNING; there is "
                       .. "nothing to shut down\n", out)
    end)
  end)

  describe("submitting a builder function", function()
    it("stores it under options.app for executors of that app", function()
      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@", { path = "@DIR@" }))
print(store:submit(function(wf, ctx)
  local a = wf:step("a", "noop", ctx)
  return { wf:step("b", "noop", {}, { after = { a } }) }
end, { app = "adhoc", scope = "today", context = { n = 1 } }))
]])
      assert.are.equal(0, code, err)
      assert.is_truthy(out:match("^1\t1\ttable: "), out)

      local executor = project:start_executor("adhoc", { "--exit-when-idle" })

      assert.are.equal(0, executor:wait(120))
      local status = assert(project:status())
      assert.are.equal("adhoc", status.execution.app)
      assert.are.equal("today", status.execution.scope)
      assert.are.equal("COMPLETE", status.execution.status)
    end)

    it("checks the actions it names", function()
      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@", { path = "@DIR@" }))
print(store:submit(function(wf) return { wf:step("a", "absent_action", {}) } end,
                   { app = "adhoc" }))
]])

      assert.are.equal(0, code, err)
      assert.are.equal("nil\tstep 'a': action 'absent_action' not found: no "
                       .. "actions/absent_action.lua in " .. project.dir
                       .. " (set the search path with --path or BGWF_PATH)\n", out)
      assert.are.equal(0, project:stored_rows())
    end)

    it("raises without options.app", function()
      local code, _, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@"))
store:submit(function(wf) end)
]])

      assert.are_not.equal(0, code)
      assert.is_truthy(err:find("bad argument #2 to 'submit' (options.app must name the "
                                .. "application of a workflow given as a function)", 1, true), err)
    end)
  end)

  describe("store handle", function()
    it("has a name, closes once and rejects use after close", function()
      local code, out, err = run_lua(project, [[
local store = assert(require("bgwf").open("@DB@"))
print(tostring(store))
store:close()
store:close()
print(tostring(store))
print(pcall(store.status, store))
print(pcall(store.submit, store, "pair"))
]])

      assert.are.equal(0, code, err)
      local closed = "the bgwf store handle is closed (open another with bgwf.open)"
      assert.are.equal("bgwf.store (" .. project.db .. ")\nbgwf.store (closed)\n"
                       .. "false\t" .. closed .. "\nfalse\t" .. closed .. "\n", out)
    end)

    it("is closed by a to-be-closed variable", function()
      local code, out, err = run_lua(project, [[
local escaped
do
  local store <close> = assert(require("bgwf").open("@DB@"))
  escaped = store
end
print(tostring(escaped))
]])

      assert.are.equal(0, code, err)
      assert.are.equal("bgwf.store (closed)\n", out)
    end)

    it("rejects a wrong handle type", function()
      local code, out, err = run_lua(project, [[
local store <close> = assert(require("bgwf").open("@DB@"))
print(pcall(store.status, {}))
]])

      assert.are.equal(0, code, err)
      assert.is_truthy(out:find("bgwf.store expected, got table", 1, true), out)
    end)
  end)

  describe("inside a step", function()
    it("refuses to open the store", function()
      project:write("actions/opener.lua", [[
return {
  execute = function(step, ctx)
    require("bgwf").open(ctx.db)
  end,
}
]])
      project:write("workflows/opens.lua", [[
return function(wf, ctx)
  return { wf:step("opens", "opener", { db = ctx.db }) }
end
]])

      local result = project:run({ "run", "opens", "--poll-ms", "50",
                                   "--context", '{"db": "' .. project.db .. '"}' })

      assert.are.equal(1, result.code)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.is_truthy(steps.opens.error:find("bgwf.open cannot be used in a process forked for "
        .. "a step or a precondition: only the executor uses the store", 1, true), steps.opens.error)
    end)
  end)
end)

describe("bgwf.preconditions", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  it("works from plain lua5.4", function()
    local code, out, err = run_lua(project, [[
local preconditions = require("bgwf.preconditions")
local file = io.open("@DIR@/present", "w") file:close()
print(preconditions.time_reached(0), preconditions.time_reached(os.time() + 3600))
print(preconditions.file_exists("@DIR@/present"),
      preconditions.file_exists("@DIR@/present", { non_empty = true }),
      preconditions.file_exists("@DIR@/absent"))
print(pcall(preconditions.time_reached, "soon"))
]])

    assert.are.equal(0, code, err)
    assert.are.equal("true\tfalse\ntrue\tfalse\tfalse\n"
                     .. "false\ttime_reached: epoch_seconds must be a number, not string\n", out)
  end)

  it("holds a step until another execution is complete", function()
    project:write("workflows/first.lua", [[
return function(wf, ctx)
  return { wf:step("gate", "wait_for_file", { path = ctx.release }, { cooldown = 0.05 }) }
end
]])
    project:write("workflows/second.lua", [[
return function(wf, ctx)
  return { wf:step("follow", "follow", ctx, { cooldown = 0.05 }) }
end
]])
    project:write("actions/follow.lua", [[
local when = require("bgwf.preconditions")
return {
  precondition = function(ctx)
    return when.execution_complete(ctx.other, ctx.db)
  end,
  execute = function(step, ctx)
    step:status("execution " .. ctx.other .. " is complete")
  end,
}
]])
    local release = project:path("release")
    assert.are.equal(0, project:run({ "submit", "first", "--context",
                                      '{"release": "' .. release .. '"}' }).code)
    assert.are.equal(0, project:run({ "submit", "second", "--context",
                                      '{"other": 1, "db": "' .. project.db .. '"}' }).code)
    project:start_executor("first,second")
    helper.sleep(0.5)
    local steps = helper.steps_by_token(assert(project:status(2)))
    assert.are.equal("WAITING", steps.follow.status)

    project:write("release", "")

    local status = project:wait_for_step("follow", "COMPLETED", { execution = 2 })
    assert.are.equal("execution 1 is complete", helper.steps_by_token(status).follow.message)
  end)
end)

describe("bgwf.rockspec", function()
  local tree

  before_each(function()
    tree = helper.new_project()
  end)

  after_each(function()
    tree:cleanup()
  end)

  it("installs a module that lua5.4 can require", function()
    if helper.shell("command -v luarocks >/dev/null 2>&1") ~= 0 then
      error("luarocks is not installed: run scripts/setup")
    end
    -- Build from a copy so that the working copy gets no build.luarocks/.
    -- LuaRocks 3.8 accepts only a rockspec named NAME-VERSION-REVISION.
    local source = tree:path("source")
    local log = tree:path("luarocks.log")
    local code = helper.shell(("mkdir -p %s && cd %s && tar -cf - --exclude=./build --exclude='./build-*' "
      .. "--exclude=./.git . | tar -xf - -C %s && cd %s && cp bgwf.rockspec bgwf-0.1.0-1.rockspec && "
      .. "luarocks --lua-version 5.4 make --deps-mode=none --tree=%s bgwf-0.1.0-1.rockspec >%s 2>&1"):format(
      helper.quote(source), helper.quote(helper.repo), helper.quote(source), helper.quote(source),
      helper.quote(tree:path("rocks")), helper.quote(log)))
    assert.are.equal(0, code, helper.read_file(log))

    local cpath = tree:path("rocks/lib/lua/5.4/?.so")
    local run_code, out, err = run_lua(tree, [[
local bgwf = require("bgwf")
local store <close> = assert(bgwf.open("@DIR@/installed.db"))
print(package.searchpath("bgwf", package.cpath), bgwf.version, type(require("bgwf.preconditions")))
]], cpath)

    assert.are.equal(0, run_code, err)
    assert.are.equal(tree:path("rocks/lib/lua/5.4/bgwf.so") .. "\t0.1.0\ttable\n", out)
  end)
end)
