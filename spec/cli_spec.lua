-- The command line itself: help, version and usage errors.

local helper = require("helper")

-- Each command and the options that its help must list.
local COMMANDS = {
  submit = { "--scope", "--context" },
  executor = { "--apps", "--max-concurrent", "--poll-ms", "--heartbeat-ms",
               "--heartbeat-timeout-ms", "--exit-when-idle" },
  run = { "--scope", "--context", "--poll-ms" },
  status = { "--json" },
}

local COMMAND_NAMES = { "executor", "run", "status", "submit" }

describe("bgwf", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("--help", function()
    it("exits 0", function()
      local result = project:run({ "--help" })

      assert.are.equal(0, result.code, result.stderr)
    end)

    it("lists every command on stdout", function()
      local result = project:run({ "--help" })

      for _, command in ipairs(COMMAND_NAMES) do
        assert.is_truthy(result.stdout:find(command, 1, true),
          ("expected %q in: %s"):format(command, result.stdout))
      end
    end)

    it("creates no database", function()
      project:run({ "--help" })

      assert.is_false(project:exists("bgwf.db"))
    end)
  end)

  for _, command in ipairs(COMMAND_NAMES) do
    describe(command .. " --help", function()
      it("exits 0", function()
        local result = project:run({ command, "--help" })

        assert.are.equal(0, result.code, result.stderr)
      end)

      it("lists the options on stdout", function()
        local result = project:run({ command, "--help" })

        assert.is_truthy(result.stdout:find(command, 1, true), result.stdout)
        for _, option in ipairs(COMMANDS[command]) do
          assert.is_truthy(result.stdout:find(option, 1, true),
            ("expected %q in: %s"):format(option, result.stdout))
        end
      end)
    end)
  end

  describe("--version", function()
    it("prints a version number", function()
      local result = project:run({ "--version" })

      assert.are.equal(0, result.code, result.stderr)
      assert.is_truthy(result.stdout:match("%d+%.%d+"), result.stdout)
    end)
  end)

  -- Each case: a command line with a usage error, and parts that the
  -- message on stderr must contain. Without a command, bgwf may print its
  -- usage text in place of a "bgwf: " message.
  local USAGE_ERRORS = {
    { name = "an unknown command", args = { "frobnicate" }, parts = { "frobnicate" } },
    { name = "an unknown global option", args = { "--frobnicate" }, parts = { "--frobnicate" } },
    { name = "no command", args = {}, parts = { "Usage" }, shows_usage = true },
    { name = "submit without a name", args = { "submit" }, parts = {} },
    { name = "executor without --apps", args = { "executor" }, parts = { "--apps" } },
    {
      name = "a non-numeric --max-concurrent",
      args = { "executor", "--apps", "simple", "--max-concurrent", "many" },
      parts = { "--max-concurrent" },
    },
    {
      name = "a non-numeric --poll-ms",
      args = { "run", "simple", "--poll-ms", "soon" },
      parts = { "--poll-ms" },
    },
    {
      name = "an --app-limit for an application not in --apps",
      args = { "executor", "--apps", "simple", "--app-limit", "other=2" },
      parts = { "--app-limit names 'other'", "--apps simple" },
    },
    { name = "an unknown run option", args = { "run", "simple", "--bogus" }, parts = { "--bogus" } },
    { name = "an unknown status option", args = { "status", "--bogus" }, parts = { "--bogus" } },
  }

  describe("executor given an application with no workflow file", function()
    it("warns that the name may be misspelled", function()
      local result = project:run({ "executor", "--apps", "simpel", "--exit-when-idle" })

      assert.are.equal(0, result.code, result.stderr)
      assert.is_truthy(result.stderr:find("app=simpel has no workflows/simpel.lua", 1, true),
        result.stderr)
      assert.is_truthy(result.stderr:find("check the spelling of --apps", 1, true), result.stderr)
    end)
  end)

  for _, case in ipairs(USAGE_ERRORS) do
    describe("given " .. case.name, function()
      it("exits 2 with a message", function()
        local result = project:run(case.args)

        assert.are.equal(2, result.code, result.stderr)
        if not case.shows_usage then
          -- Runtime errors start with "bgwf: ", usage errors with "bgwf COMMAND: ".
          assert.is_truthy(result.stderr:match("^bgwf[%a ]*: "), result.stderr)
        end
        for _, part in ipairs(case.parts) do
          assert.is_truthy(result.stderr:find(part, 1, true),
            ("expected %q in: %s"):format(part, result.stderr))
        end
        assert.are.equal(0, project:stored_rows())
      end)
    end)
  end
end)
