-- Preconditions: a step whose precondition returns false stays WAITING and
-- is asked again only after its cooldown.

local helper = require("helper")

-- The precondition appends the time of each check (seconds with a fraction)
-- to ctx.checks and returns whether ctx.flag exists. execute appends the
-- token to ctx.runs.
local GATED_ACTION = [[
local function now()
  local pipe = io.popen("date +%s.%N")
  local text = pipe:read("l")
  pipe:close()
  return text
end

local function exists(path)
  local file = io.open(path, "r")
  if file then
    file:close()
    return true
  end
  return false
end

return {
  precondition = function(ctx)
    local checks = assert(io.open(ctx.checks, "a"))
    checks:write(now(), "\n")
    checks:close()
    return exists(ctx.flag)
  end,
  execute = function(step, ctx)
    local runs = assert(io.open(ctx.runs, "a"))
    runs:write(step.token, "\n")
    runs:close()
  end,
}
]]

-- Write workflows/gate.lua with one gated step. cooldown is Lua source
-- text, or nil to leave the option out.
local function write_gate(project, cooldown)
  local options = cooldown and (", { cooldown = " .. cooldown .. " }") or ""
  project:write("workflows/gate.lua", [[
return function(wf, ctx)
  return { wf:step("gated", "gated", {
    checks = "@DIR@/checks", flag = "@DIR@/flag", runs = "@DIR@/runs",
  }]] .. options .. [[) }
end
]])
  project:write("actions/gated.lua", GATED_ACTION)
end

local function count_checks(project)
  return #project:lines("checks")
end

describe("a precondition", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("that returns false", function()
    it("keeps its step WAITING across checks", function()
      write_gate(project, "0.2")
      assert.are.equal(0, project:run({ "submit", "gate" }).code)

      project:start_executor("gate", { "--poll-ms", "50" })
      helper.wait_until("the precondition was checked 3 times",
        function() return count_checks(project) >= 3 end, nil,
        function() return project:describe() end)

      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("WAITING", steps.gated.status)
      assert.is_false(project:exists("runs"))
    end)

    it("runs the step once it returns true", function()
      write_gate(project, "0.2")
      assert.are.equal(0, project:run({ "submit", "gate" }).code)
      project:start_executor("gate", { "--poll-ms", "50" })
      helper.wait_until("the precondition was checked 2 times",
        function() return count_checks(project) >= 2 end, nil,
        function() return project:describe() end)

      project:write("flag", "")

      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("COMPLETED", helper.steps_by_token(status).gated.status)
      assert.are.same({ "gated" }, project:lines("runs"))
    end)
  end)

  describe("with a cooldown of 1 s and a poll of 50 ms", function()
    it("spaces checks by the cooldown", function()
      write_gate(project, "1")
      assert.are.equal(0, project:run({ "submit", "gate" }).code)

      project:start_executor("gate", { "--poll-ms", "50" })
      helper.wait_until("the precondition was checked 4 times",
        function() return count_checks(project) >= 4 end, 90,
        function() return project:describe() end)

      local times = {}
      for _, line in ipairs(project:lines("checks")) do
        times[#times + 1] = assert(tonumber(line), line)
      end
      -- The slack of 0.2 s covers the time between the executor deciding
      -- to check and the precondition reading the clock.
      for i = 2, #times do
        local gap = times[i] - times[i - 1]
        assert.is_true(gap >= 0.8,
          ("check %d came %.3f s after check %d, expected at least 1 s"):format(i, gap, i - 1))
      end
      local span = times[#times] - times[1]
      local polls_in_span = span / 0.05
      assert.is_true(#times * 10 < polls_in_span,
        ("%d checks over %.3f s, which is %.0f polls"):format(#times, span, polls_in_span))
    end)
  end)

  describe("that takes longer than a poll", function()
    it("is checked once at a time", function()
      project:write("workflows/slow_gate.lua", [[
return function(wf, ctx)
  return { wf:step("gated", "slow_gate", { events = "@DIR@/events" }, { cooldown = 0.5 }) }
end
]])
      -- Append "begin" and "end" around a 0.3 s pause, which spans about
      -- six polls of 50 ms, and return false.
      project:write("actions/slow_gate.lua", [[
local function append(path, line)
  local file = assert(io.open(path, "a"))
  file:write(line, "\n")
  file:close()
end

return {
  precondition = function(ctx)
    append(ctx.events, "begin")
    os.execute("sleep 0.3")
    append(ctx.events, "end")
    return false
  end,
  execute = function(step, ctx) end,
}
]])
      assert.are.equal(0, project:run({ "submit", "slow_gate" }).code)

      project:start_executor("slow_gate", { "--poll-ms", "50" })
      helper.wait_until("the precondition finished 3 checks", function()
        local ends = 0
        for _, event in ipairs(project:lines("events")) do
          if event == "end" then
            ends = ends + 1
          end
        end
        return ends >= 3
      end, nil, function() return project:describe() end)

      local events = project:lines("events")
      local running, max_running = 0, 0
      for _, event in ipairs(events) do
        running = running + (event == "begin" and 1 or -1)
        max_running = math.max(max_running, running)
      end
      assert.are.equal(1, max_running,
        "checks of one step overlapped:\n" .. table.concat(events, "\n"))
    end)
  end)

  describe("without a cooldown option", function()
    it("waits the default 300 s to check again", function()
      write_gate(project, nil)
      assert.are.equal(0, project:run({ "submit", "gate" }).code)
      project:start_executor("gate", { "--poll-ms", "50" })
      helper.wait_until("the precondition was checked",
        function() return count_checks(project) >= 1 end, nil,
        function() return project:describe() end)

      project:write("flag", "")
      -- About 40 polls happen meanwhile, and with a cooldown of 300 s none
      -- of them checks again.
      helper.sleep(2)

      assert.are.equal(1, count_checks(project))
      local steps = helper.steps_by_token(assert(project:status()))
      assert.are.equal("WAITING", steps.gated.status)
      assert.is_false(project:exists("runs"))
    end)
  end)
end)
