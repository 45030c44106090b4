-- Native (C) actions: the example shared object actions/count_lines.so,
-- shared objects built by the spec (good, crashing, broken), and a host
-- program that bundles its own action through bgwf_main().

local helper = require("helper")

local build_folder = helper.bin:match("^(.*)/[^/]*$")

-- Compile C source into the shared object at relative (under the project)
-- the way a user builds an action: against bgwf.h, without liblua.
local function compile(project, relative, source)
  local c_file = project:write(".spec/src/" .. relative:gsub("[/.]", "_") .. ".c", source)
  local output = project:path(relative)
  helper.shell("mkdir -p " .. helper.quote(output:match("^(.*)/[^/]*$")))
  local log = project:path(".spec/cc.log")
  local code = helper.shell(("cc -shared -fPIC -Wall -I %s $(pkg-config --cflags lua5.4) -o %s %s >%s 2>&1")
    :format(helper.quote(helper.repo .. "/include"), helper.quote(output), helper.quote(c_file),
            helper.quote(log)))
  assert(code == 0, "compiling " .. relative .. " failed:\n" .. (helper.read_file(log) or ""))
  return output
end

-- A C action with the given entry symbol and struct initializer.
local function module_source(symbol, initializer)
  return ([[
#include <lauxlib.h>
#include <lua.h>
#include "bgwf.h"

/* execute(step, ctx): "ok" sets a status, "fail" raises, "crash" writes
 * through a NULL pointer. */
static int execute(lua_State *L)
{
    const char *mode = "ok";
    if (lua_getfield(L, 2, "mode") == LUA_TSTRING)
        mode = lua_tostring(L, -1);
    if (mode[0] == 'f')
        return luaL_error(L, "the C action failed on purpose");
    if (mode[0] == 'c') {
        volatile int *invalid = 0;
        *invalid = 1;
    }
    lua_getfield(L, 1, "status");
    lua_pushvalue(L, 1);
    lua_getfield(L, 1, "token");
    lua_pushfstring(L, "native step %%s ran", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_call(L, 2, 0);
    return 0;
}

BGWF_EXPORT const struct bgwf_action *%s(void)
{
    static const struct bgwf_action action = %s;
    return &action;
}
]]):format(symbol, initializer)
end

-- One step per mode, run one after the other.
local ONE_MODE = [[
return function(wf, ctx)
  return { wf:step(ctx.mode, "native.demo", ctx) }
end
]]

-- The crash happens while the step beside is running: crash waits (through
-- wait_for_file) until beside has started, and beside runs until the spec
-- writes its release file.
local CRASH_BESIDE = [[
return function(wf, ctx)
  local beside = wf:step("beside", "wait_for_release",
                         { started = ctx.started, release = ctx.release })
  local gate = wf:step("gate", "wait_for_file", { path = ctx.started }, { cooldown = 0.05 })
  return { beside, wf:step("crash", "native.demo", { mode = "crash" }, { after = { gate } }) }
end
]]

describe("a native action from a shared object", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("count_lines, the example under actions/", function()
    before_each(function()
      project:write("workflows/count.lua", [[
return function(wf, ctx)
  return { wf:step("count", "count_lines", { path = ctx.path }) }
end
]])
    end)

    it("counts the lines of a file", function()
      local input = project:write("input.txt", "a\nb\nc\n")

      local result = project:run({ "run", "count", "--poll-ms", "50", "--path",
                                   project.dir .. ":" .. build_folder,
                                   "--context", '{"path": "' .. input .. '"}' })

      assert.are.equal(0, result.code, result.stderr)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("COMPLETED", steps.count.status)
      assert.are.equal("3 lines in " .. input, steps.count.message)
      local logs = project:run({ "logs", "1", "count" })
      assert.is_truthy(logs.stdout:find(" 3 lines in " .. input .. "\n", 1, true), logs.stdout)
    end)

    it("fails with its message when the file cannot be read", function()
      local result = project:run({ "run", "count", "--poll-ms", "50", "--path",
                                   project.dir .. ":" .. build_folder,
                                   "--context", '{"path": "' .. project.dir .. '"}' })

      assert.are.equal(1, result.code)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("FAILED", steps.count.status)
      assert.are.equal("count_lines: reading '" .. project.dir .. "' failed: Is a directory",
                       (steps.count.error or ""):match("^[^\n]*"))
    end)
  end)

  describe("that succeeds, fails and crashes", function()
    before_each(function()
      compile(project, "actions/native/demo.so",
              module_source("bgwf_open_native_demo", 'BGWF_ACTION("native.demo", execute, NULL)'))
      project:write("workflows/one_mode.lua", ONE_MODE)
    end)

    it("completes the step that succeeds", function()
      local result = project:run({ "run", "one_mode", "--poll-ms", "50",
                                   "--context", '{"mode": "ok"}' })

      assert.are.equal(0, result.code, result.stderr)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("COMPLETED", steps.ok.status)
      assert.are.equal("native step ok ran", steps.ok.message)
    end)

    it("fails the step that raises with its message", function()
      local result = project:run({ "run", "one_mode", "--poll-ms", "50",
                                   "--context", '{"mode": "fail"}' })

      assert.are.equal(1, result.code)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("FAILED", steps.fail.status)
      assert.are.equal("the C action failed on purpose", (steps.fail.error or ""):match("^[^\n]*"))
    end)

    it("fails only the step that crashes", function()
      project:write("workflows/crash_beside.lua", CRASH_BESIDE)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      local executor = project:start_executor("crash_beside")
      local submitted = project:run({ "submit", "crash_beside", "--context",
        ('{"started": "%s", "release": "%s"}'):format(project:path("started"),
                                                       project:path("release")) })
      assert.are.equal(0, submitted.code, submitted.stderr)

      local status = project:wait_for_step("crash", "FAILED")
      local steps = helper.steps_by_token(status)
      assert.are.equal("step process was killed by signal SIGSEGV (Segmentation fault)",
                       (steps.crash.error or ""):match("^[^,\n]*"))
      assert.are.equal("RUNNING", steps.beside.status)

      project:write("release", "")

      project:wait_for_step("beside", "COMPLETED")
      assert.is_true(executor:running())
    end)
  end)

  describe("that cannot be loaded", function()
    local ONE_STEP = [[
return function(wf, ctx)
  return { wf:step("only", "broken", {}) }
end
]]

    before_each(function()
      project:write("workflows/one.lua", ONE_STEP)
    end)

    local cases = {
      {
        description = "a missing entry point",
        source = module_source("bgwf_open_other_name", 'BGWF_ACTION("broken", execute, NULL)'),
        message = "action 'broken' (@DIR@/actions/broken.so) does not export bgwf_open_broken: "
          .. "define 'const struct bgwf_action *bgwf_open_broken(void)' as bgwf.h describes",
      },
      {
        description = "another ABI version",
        source = module_source("bgwf_open_broken", '{ 1, "broken", execute, NULL }'),
        message = "action 'broken' (@DIR@/actions/broken.so) was built against bgwf ABI version 1, "
          .. "but this bgwf has ABI version 2: rebuild it with this bgwf's bgwf.h",
      },
      {
        description = "another action name",
        source = module_source("bgwf_open_broken", 'BGWF_ACTION("other", execute, NULL)'),
        message = "action 'broken' (@DIR@/actions/broken.so) declares the name 'other': "
          .. "bgwf_open_broken must return an action named 'broken'",
      },
    }
    for _, case in ipairs(cases) do
      it("rejects " .. case.description .. " at submit", function()
        compile(project, "actions/broken.so", case.source)

        local result = project:run({ "submit", "one" })

        assert.are.equal(1, result.code)
        assert.are.equal("bgwf: step 'only': " .. case.message:gsub("@DIR@", project.dir) .. "\n",
                         result.stderr)
        assert.are.equal(0, project:stored_rows())
      end)
    end

    it("rejects a file that is not a shared object", function()
      project:write("actions/broken.so", "not an ELF file\n")

      local result = project:run({ "submit", "one" })

      assert.are.equal(1, result.code)
      assert.is_truthy(result.stderr:find("bgwf: step 'only': loading action 'broken' from "
                                          .. project.dir .. "/actions/broken.so failed: ", 1, true),
                       result.stderr)
    end)

    for _, name in ipairs({ "../broken", "actions/broken", "a..b", "/tmp/broken" }) do
      it("rejects the action name " .. name, function()
        compile(project, "actions/broken.so",
                module_source("bgwf_open_broken", 'BGWF_ACTION("broken", execute, NULL)'))
        project:write("workflows/bad.lua", ([[
return function(wf, ctx)
  return { wf:step("only", %q, {}) }
end
]]):format(name))

        local result = project:run({ "submit", "bad" })

        assert.are.equal(1, result.code)
        assert.is_truthy(result.stderr:find("invalid action name '" .. name .. "'", 1, true),
                         result.stderr)
        assert.are.equal(0, project:stored_rows())
      end)
    end
  end)

  describe("next to a Lua action of the same name", function()
    it("takes precedence over actions/NAME.lua", function()
      compile(project, "actions/native/demo.so",
              module_source("bgwf_open_native_demo", 'BGWF_ACTION("native.demo", execute, NULL)'))
      project:write("actions/native/demo.lua", helper.actions.fail)
      project:write("workflows/one.lua", [[
return function(wf, ctx)
  return { wf:step("ok", "native.demo", {}) }
end
]])

      local result = project:run({ "run", "one", "--poll-ms", "50" })

      assert.are.equal(0, result.code, result.stderr)
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("native step ok ran", steps.ok.message)
    end)
  end)
end)

describe("a host program built with bgwf_main", function()
  local project
  local host_bin = build_folder .. "/bgwf_host_example"

  before_each(function()
    project = helper.new_project()
    project:write("workflows/greetings.lua", [[
return function(wf, ctx)
  return {
    wf:step("hello", "greet", { name = "world" }),
    wf:step("nameless", "greet", {}),
  }
end
]])
  end)

  after_each(function()
    project:cleanup()
  end)

  -- Run the host program like project:run runs bgwf.
  local function run_host(args)
    local saved = helper.bin
    helper.bin = host_bin
    local ok, result = pcall(project.run, project, args)
    helper.bin = saved
    assert(ok, result)
    return result
  end

  it("runs its compiled-in action", function()
    local result = run_host({ "run", "greetings", "--poll-ms", "50" })

    assert.are.equal(1, result.code, result.stderr)
    local steps = helper.steps_by_token(assert(project:status()))
    assert.are.equal("COMPLETED", steps.hello.status)
    assert.are.equal("hello, world", steps.hello.message)
    assert.are.equal("FAILED", steps.nameless.status)
    assert.are.equal("greet: ctx.name must be a string", (steps.nameless.error or ""):match("^[^\n]*"))
  end)

  it("is unknown to the plain bgwf binary", function()
    local result = project:run({ "submit", "greetings" })

    assert.are.equal(1, result.code)
    assert.is_truthy(result.stderr:find("action 'greet' not found", 1, true), result.stderr)
  end)
end)
