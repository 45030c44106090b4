-- Invalid names, workflow files, contexts and options: each is rejected
-- with a message that names the problem, and nothing is stored.

local helper = require("helper")

local VALID_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("only", "noop", {}) }
end
]]

-- Loading this file writes the marker "outside_loaded". It sits in the
-- project root, outside workflows/ and actions/, so no name may reach it.
local OUTSIDE_FILE = [[
local marker = io.open("@DIR@/outside_loaded", "w")
marker:write("loaded\n")
marker:close()
return function(wf, ctx)
  return { wf:step("only", "noop", {}) }
end
]]

-- Return the source of a workflow file whose body is `body`.
local function workflow(body)
  return "return function(wf, ctx)\n" .. body .. "end\n"
end

-- Each case: files to write (besides workflows/ok.lua and outside.lua),
-- the command line, extra environment, the expected exit code, and parts
-- that the message on stderr must contain.
local CASES = {
  {
    name = "an unknown workflow",
    args = { "submit", "missing_app" },
    code = 1,
    parts = { "missing_app" },
  },
  {
    name = "an unknown action",
    files = { ["workflows/uses_missing.lua"] = workflow('  wf:step("one", "no_such_action", {})\n') },
    args = { "submit", "uses_missing" },
    code = 1,
    parts = { "no_such_action" },
  },
  {
    name = "a workflow file with a syntax error",
    files = {
      ["workflows/syntax_error.lua"] = workflow(
        '  wf:step("one", "noop", {})\n  wf:step("two" "noop", {})\n'),
    },
    args = { "submit", "syntax_error" },
    code = 1,
    parts = { "syntax_error.lua:3" },
  },
  {
    name = "a workflow file that raises an error",
    files = {
      ["workflows/runtime_error.lua"] = workflow(
        '  wf:step("one", "noop", {})\n  error("cannot build this workflow")\n'),
    },
    args = { "submit", "runtime_error" },
    code = 1,
    parts = { "runtime_error.lua:3", "cannot build this workflow" },
  },
  {
    name = "a workflow file that returns no function",
    files = { ["workflows/not_a_function.lua"] = "return 42\n" },
    args = { "submit", "not_a_function" },
    code = 1,
    parts = { "not_a_function" },
  },
  {
    name = "a duplicate token",
    files = {
      ["workflows/duplicate.lua"] = workflow(
        '  wf:step("twice", "noop", {})\n  wf:step("twice", "noop", {})\n'),
    },
    args = { "submit", "duplicate" },
    code = 1,
    parts = { "twice" },
  },
  {
    name = "a token that repeats a multi-step token",
    files = {
      ["workflows/duplicate_nested.lua"] = workflow([[
  wf:step("outer__inner", "noop", {})
  wf:multistep("outer", function(sub)
    return { sub:step("inner", "noop", {}) }
  end)
]]),
    },
    args = { "submit", "duplicate_nested" },
    code = 1,
    parts = { "outer__inner" },
  },
  {
    name = "a cycle",
    files = {
      ["workflows/cycle.lua"] = workflow([[
  wf:step("alpha", "noop", {}, { after = { "gamma" } })
  wf:step("beta", "noop", {}, { after = { "alpha" } })
  wf:step("gamma", "noop", {}, { after = { "beta" } })
]]),
    },
    args = { "submit", "cycle" },
    code = 1,
    parts = { "alpha", "beta", "gamma" },
  },
  {
    name = "a step after itself",
    files = {
      ["workflows/self_cycle.lua"] = workflow(
        '  wf:step("itself", "noop", {}, { after = { "itself" } })\n'),
    },
    args = { "submit", "self_cycle" },
    code = 1,
    parts = { "itself" },
  },
  {
    name = "an after naming no step",
    files = {
      ["workflows/ghost_after.lua"] = workflow(
        '  wf:step("one", "noop", {}, { after = { "ghost" } })\n'),
    },
    args = { "submit", "ghost_after" },
    code = 1,
    parts = { "ghost" },
  },
  {
    name = "a token with a dash",
    files = { ["workflows/bad_token.lua"] = workflow('  wf:step("bad-token", "noop", {})\n') },
    args = { "submit", "bad_token" },
    code = 1,
    parts = { "bad-token" },
  },
  {
    name = "a negative cooldown",
    files = {
      ["workflows/negative_cooldown.lua"] = workflow(
        '  wf:step("impatient", "noop", {}, { cooldown = -1 })\n'),
    },
    args = { "submit", "negative_cooldown" },
    code = 1,
    parts = { "cooldown" },
  },
  {
    name = "a context containing a function",
    files = {
      ["workflows/context_function.lua"] = workflow(
        '  wf:step("with_function", "noop", { callback = function() end })\n'),
    },
    args = { "submit", "context_function" },
    code = 1,
    parts = { "with_function", "function" },
  },
  {
    name = "a context containing a userdata",
    files = {
      ["workflows/context_userdata.lua"] = workflow(
        '  wf:step("with_userdata", "noop", { out = io.stdout })\n'),
    },
    args = { "submit", "context_userdata" },
    code = 1,
    parts = { "with_userdata" },
  },
  {
    name = "a context containing a cycle",
    files = {
      ["workflows/context_cycle.lua"] = workflow(
        '  local loop = {}\n  loop.self = loop\n  wf:step("with_cycle", "noop", loop)\n'),
    },
    args = { "submit", "context_cycle" },
    code = 1,
    parts = { "with_cycle" },
  },
  {
    name = "a context containing NaN",
    files = {
      ["workflows/context_nan.lua"] = workflow(
        '  wf:step("with_nan", "noop", { value = 0/0 })\n'),
    },
    args = { "submit", "context_nan" },
    code = 1,
    parts = { "with_nan" },
  },
  {
    name = "a context with a boolean key",
    files = {
      ["workflows/context_boolean_key.lua"] = workflow(
        '  wf:step("with_boolean_key", "noop", { [true] = 1 })\n'),
    },
    args = { "submit", "context_boolean_key" },
    code = 1,
    parts = { "with_boolean_key" },
  },
  {
    name = "an invalid --context JSON",
    args = { "submit", "ok", "--context", "{bad" },
    code = 1,
    parts = { "context" },
  },
  {
    name = "a missing --context file",
    args = { "submit", "ok", "--context", "@missing.json" },
    code = 1,
    parts = { "missing.json" },
  },
  {
    name = "an unknown option",
    args = { "submit", "ok", "--bogus" },
    code = 2,
    parts = { "--bogus" },
  },
  {
    name = "an option without its value",
    args = { "submit", "ok", "--scope" },
    code = 2,
    parts = { "--scope" },
  },
  {
    name = "a database path that cannot be opened",
    args = { "submit", "ok" },
    env = { BGWF_DB = "/nonexistent/dir/x.db" },
    code = 1,
    parts = { "/nonexistent/dir/x.db" },
  },
  {
    name = "a database URL of an unsupported kind",
    args = { "submit", "ok", "--db", "mysql://localhost/bgwf" },
    code = 1,
    parts = { "unsupported database URL 'mysql://localhost/bgwf'", "postgresql://" },
  },
}

-- Names that must never become paths, for a workflow and for an action.
local INVALID_NAMES = { "a/b", "../outside", "a-b", "a b", "a..b", ".hidden", "trailing." }

for _, name in ipairs(INVALID_NAMES) do
  CASES[#CASES + 1] = {
    name = ("the workflow name %q"):format(name),
    args = { "submit", name },
    code = 1,
    parts = { name },
  }
  CASES[#CASES + 1] = {
    name = ("the action name %q"):format(name),
    files = {
      ["workflows/bad_action_name.lua"] = workflow(("  wf:step(\"one\", %q, {})\n"):format(name)),
    },
    args = { "submit", "bad_action_name" },
    code = 1,
    parts = { name },
  }
end

describe("bgwf submit", function()
  for _, case in ipairs(CASES) do
    describe("given " .. case.name, function()
      local project, result

      setup(function()
        project = helper.new_project()
        project:write("workflows/ok.lua", VALID_WORKFLOW)
        project:write("outside.lua", OUTSIDE_FILE)
        for path, text in pairs(case.files or {}) do
          project:write(path, text)
        end
        result = project:run(case.args, { env = case.env })
      end)

      teardown(function()
        project:cleanup()
      end)

      it("exits " .. case.code, function()
        assert.are.equal(case.code, result.code, result.stderr)
      end)

      it("names the problem", function()
        -- Runtime errors start with "bgwf: ", usage errors with "bgwf COMMAND: ".
        assert.is_truthy(result.stderr:match("^bgwf[%a ]*: "), result.stderr)
        for _, part in ipairs(case.parts) do
          assert.is_truthy(result.stderr:find(part, 1, true),
            ("expected %q in: %s"):format(part, result.stderr))
        end
      end)

      it("stores nothing", function()
        assert.are.equal("", result.stdout)
        assert.are.equal(0, project:stored_rows())
        assert.is_false(helper.file_exists("/nonexistent/dir"))
        assert.is_false(project:exists("outside_loaded"), "outside.lua was loaded")
      end)
    end)
  end

  describe("given dotted names", function()
    local project

    before_each(function()
      project = helper.new_project()
    end)

    after_each(function()
      project:cleanup()
    end)

    it("loads them from sub-folders", function()
      project:write("workflows/reports/daily.lua",
        workflow('  return { wf:step("one", "steps.mark", {}) }\n'))
      project:write("actions/steps/mark.lua", [[
return {
  execute = function(step, ctx)
    local marker = assert(io.open("@DIR@/marked", "w"))
    marker:write(step.app, "\n")
    marker:close()
  end,
}
]])

      local result = project:run({ "run", "reports.daily", "--poll-ms", "50" })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.equal("reports.daily\n", project:read("marked"))
    end)
  end)

  describe("given --db and --path", function()
    local project

    before_each(function()
      project = helper.new_project()
    end)

    after_each(function()
      project:cleanup()
    end)

    it("uses them in place of the environment", function()
      project:write("elsewhere/workflows/ok.lua", VALID_WORKFLOW)
      local db = project:path("other.db")

      local result = project:run({ "submit", "ok", "--db", db, "--path", project:path("elsewhere") },
        { plain_env = true })

      assert.are.equal(0, result.code, result.stderr)
      assert.are.equal(1, project:count_rows("executions", db))
      assert.is_false(project:exists("bgwf.db"))
    end)
  end)
end)
