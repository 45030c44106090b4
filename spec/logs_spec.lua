-- Step logs and what an operator sees of a failure. Each step's output goes
-- to a file of its own per application, execution, attempt and step, which
-- `bgwf logs` prints. `bgwf show --step` shows an error in full, and the
-- executor's own log lines can be JSON.

local helper = require("helper")
local observability = require("observability_helper")

-- One step that writes through every channel a step has.
local TALK_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("talk", "talk", {}) }
end
]]

local TALK_ACTION = [[
return {
  execute = function(step, ctx)
    print("from print", 1)
    io.write("from io.write\n")
    io.stderr:write("from io.stderr\n")
    step:log("from step:log", 2)
    io.stdout:flush()
    os.execute("echo from child stdout; echo from child stderr >&2")
  end,
}
]]

-- One step that prints 200 lines and then calls step:log once.
local PRINT_THEN_LOG_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("print_then_log", "print_then_log", {}) }
end
]]

local PRINT_THEN_LOG_ACTION = [[
return {
  execute = function(step, ctx)
    for i = 1, 200 do
      print("printed line " .. i)
    end
    step:log("logged after 200 printed lines")
  end,
}
]]

-- Its one step "say" prints "I am APP in step say"; the specs store this
-- workflow under two application names.
local SAY_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("say", "say", {}) }
end
]]

local SAY_ACTION = [[
return {
  execute = function(step, ctx)
    print("I am " .. step.app .. " in step " .. step.token)
  end,
}
]]

-- "first" prints 30 numbered lines, then "second" prints one line.
local TWO_STEPS_WORKFLOW = [[
return function(wf, ctx)
  local first = wf:step("first", "count_lines", { count = 30 })
  return { wf:step("second", "count_lines", { count = 1 }, { after = { first } }) }
end
]]

local COUNT_LINES_ACTION = [[
return {
  execute = function(step, ctx)
    for i = 1, ctx.count do
      print(step.token .. " line " .. i)
    end
  end,
}
]]

-- "ping" and "pong" run at once and take turns printing "turn N": each
-- waits for the other's file of the previous turn and sleeps 0.2 s before
-- and after printing. The executor stamps a line when it reads it, so each
-- turn gets a later time unless the executor stalls for 0.2 s.
local PING_PONG_WORKFLOW = [[
return function(wf, ctx)
  local dir = "@DIR@"
  return {
    wf:step("ping", "ping_pong", { dir = dir, me = "ping", other = "pong", leads = true }),
    wf:step("pong", "ping_pong", { dir = dir, me = "pong", other = "ping", leads = false }),
  }
end
]]

local PING_PONG_ACTION = [[
local function wait_for(path)
  local give_up_at = os.time() + 120
  while true do
    local file = io.open(path, "r")
    if file then
      file:close()
      return
    end
    if os.time() > give_up_at then
      error("the file " .. path .. " never appeared")
    end
    os.execute("sleep 0.01")
  end
end

return {
  execute = function(step, ctx)
    for turn = 1, 2 do
      if ctx.leads and turn > 1 then
        wait_for(ctx.dir .. "/" .. ctx.other .. "_" .. (turn - 1))
      elseif not ctx.leads then
        wait_for(ctx.dir .. "/" .. ctx.other .. "_" .. turn)
      end
      os.execute("sleep 0.2")
      print("turn " .. turn)
      io.stdout:flush()
      os.execute("sleep 0.2")
      local file = assert(io.open(ctx.dir .. "/" .. ctx.me .. "_" .. turn, "w"))
      file:close()
    end
  end,
}
]]

-- "slow" prints a line, waits for the file "release", prints another.
local SLOW_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("slow", "print_wait_print", { release = "@DIR@/release" }) }
end
]]

local PRINT_WAIT_PRINT_ACTION = [[
local function exists(path)
  local file = io.open(path, "r")
  if file then file:close() return true end
  return false
end

return {
  execute = function(step, ctx)
    print("before the release")
    io.stdout:flush()
    local give_up_at = os.time() + 120
    while not exists(ctx.release) do
      if os.time() > give_up_at then
        error("the release file " .. ctx.release .. " never appeared")
      end
      os.execute("sleep 0.05")
    end
    print("after the release")
  end,
}
]]

-- "flood" writes ctx.megabytes MiB of 1 KiB lines to stdout, then records
-- in ctx.done how many of its 1 MiB writes succeeded.
local FLOOD_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("flood", "flood", { megabytes = 200, done = "@DIR@/flood_done" }) }
end
]]

local FLOOD_ACTION = [[
return {
  execute = function(step, ctx)
    local chunk = string.rep(string.rep("x", 1023) .. "\n", 1024)
    local written = 0
    for _ = 1, ctx.megabytes do
      if io.stdout:write(chunk) then
        written = written + 1
      end
    end
    io.stdout:flush()
    print("the last line")
    local done = assert(io.open(ctx.done, "w"))
    done:write(written, "\n")
    done:close()
  end,
}
]]

-- "broken" prints a line, then raises from a nested function.
local BROKEN_WORKFLOW = [[
return function(wf, ctx)
  return { wf:step("broken", "broken", {}) }
end
]]

local BROKEN_ACTION = [[
local function check_input()
  error("the input table is empty")
end

return {
  execute = function(step, ctx)
    print("checking the input")
    check_input()
  end,
}
]]

local function messages_of(path)
  local text = helper.read_file(path)
  assert(text, "missing log file " .. path)
  return observability.messages(text)
end

describe("step logs", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("of a step that writes through every channel", function()
    local log_path

    before_each(function()
      project:write("workflows/talk.lua", TALK_WORKFLOW)
      project:write("actions/talk.lua", TALK_ACTION)
      observability.run_ok(project, { "run", "talk", "--poll-ms", "50" })
      local execution, attempt = observability.ids(project)
      log_path = observability.log_path(project, "talk", execution, attempt, "talk")
    end)

    it("contain every line", function()
      local messages = messages_of(log_path)

      local expected = {
        "from print\t1",
        "from io.write",
        "from io.stderr",
        "from step:log\t2",
        "from child stdout",
        "from child stderr",
      }
      for _, line in ipairs(expected) do
        assert.is_truthy(observability.index_of(messages, line),
          ("%q is missing from:\n%s"):format(line, table.concat(messages, "\n")))
      end
    end)

    it("keep the order of stdout and stderr", function()
      local messages = messages_of(log_path)

      local expected = {
        "from print\t1",
        "from io.write",
        "from io.stderr",
        "from child stdout",
        "from child stderr",
      }
      local previous = 0
      for _, line in ipairs(expected) do
        local index = observability.index_of(messages, line)
        assert.is_truthy(index, ("%q is missing from:\n%s"):format(
          line, table.concat(messages, "\n")))
        assert.is_true(index > previous, ("%q is out of order in:\n%s"):format(
          line, table.concat(messages, "\n")))
        previous = index
      end
    end)

    it("prefix every line with the time", function()
      local messages, unprefixed = messages_of(log_path)

      assert.are.same({}, unprefixed)
      assert.are.equal(7, #messages, table.concat(messages, "\n"))
    end)

    it("start with a header naming the try and executor", function()
      local messages = messages_of(log_path)
      local status = assert(project:status())
      local step = helper.steps_by_token(status).talk

      local header = ("== try 1 on executor %d (pid "):format(step.executor)
      assert.are.equal(header, messages[1]:sub(1, #header))
      local host = messages[1]:match(", host ([^%)]+)%) ==$")
      assert.are.equal(helper.hostname(), host)
    end)

    it("are readable by their owner only", function()
      assert.are.equal("600", observability.mode(log_path))
      local folder = log_path
      for _ = 1, 4 do
        folder = folder:match("^(.*)/[^/]*$")
        assert.are.equal("700", observability.mode(folder), folder)
      end
    end)
  end)

  describe("of a step that prints and then calls step:log", function()
    it("keep the step:log line after the printed ones", function()
      project:write("workflows/print_then_log.lua", PRINT_THEN_LOG_WORKFLOW)
      project:write("actions/print_then_log.lua", PRINT_THEN_LOG_ACTION)
      observability.run_ok(project, { "run", "print_then_log", "--poll-ms", "50" })
      local execution, attempt = observability.ids(project)

      local messages = messages_of(observability.log_path(project, "print_then_log",
        execution, attempt, "print_then_log"))

      assert.are.equal(202, #messages)
      assert.are.equal("printed line 200", messages[201])
      assert.are.equal("logged after 200 printed lines", messages[202])
    end)
  end)

  describe("of two applications", function()
    it("go to separate folders", function()
      project:write("workflows/alpha.lua", SAY_WORKFLOW)
      project:write("workflows/beta.lua", SAY_WORKFLOW)
      project:write("actions/say.lua", SAY_ACTION)

      observability.run_ok(project, { "run", "alpha", "--poll-ms", "50" })
      local alpha_execution, alpha_attempt = observability.ids(project)
      observability.run_ok(project, { "run", "beta", "--poll-ms", "50" })
      local beta_execution, beta_attempt = observability.ids(project)

      local alpha = observability.log_path(project, "alpha", alpha_execution, alpha_attempt, "say")
      local beta = observability.log_path(project, "beta", beta_execution, beta_attempt, "say")
      local alpha_messages = messages_of(alpha)
      local beta_messages = messages_of(beta)
      assert.are.equal(2, #alpha_messages, table.concat(alpha_messages, "\n"))
      assert.are.equal("I am alpha in step say", alpha_messages[2])
      assert.are.equal(2, #beta_messages, table.concat(beta_messages, "\n"))
      assert.are.equal("I am beta in step say", beta_messages[2])
    end)
  end)

  describe("of an executor given --log-dir", function()
    it("go to that folder and are read from it", function()
      project:write("workflows/alpha.lua", SAY_WORKFLOW)
      project:write("actions/say.lua", SAY_ACTION)
      local log_dir = project:path("elsewhere/logs")
      observability.run_ok(project, { "submit", "alpha" })
      local executor = project:start_executor("alpha",
        { "--exit-when-idle", "--log-dir", log_dir })
      assert.are.equal(0, executor:wait(120), executor:describe())
      local execution, attempt = observability.ids(project)

      local path = ("%s/alpha/%d/%d/say.log"):format(log_dir, execution, attempt)
      local messages = messages_of(path)
      assert.are.equal("I am alpha in step say", messages[2])
      assert.is_falsy(project:exists("bgwf-logs/alpha"))
      local printed = observability.run_ok(project,
        { "logs", tostring(execution), "say", "--log-dir", log_dir })
      assert.are.same(messages, observability.messages(printed.stdout))
    end)
  end)

  describe("printed by bgwf logs", function()
    local execution

    before_each(function()
      project:write("workflows/two_steps.lua", TWO_STEPS_WORKFLOW)
      project:write("actions/count_lines.lua", COUNT_LINES_ACTION)
      observability.run_ok(project, { "run", "two_steps", "--poll-ms", "50" })
      execution = observability.ids(project)
    end)

    it("show one step's lines with STEP", function()
      local result = observability.run_ok(project, { "logs", tostring(execution), "second" })

      local messages, unprefixed = observability.messages(result.stdout)
      assert.are.same({}, unprefixed)
      assert.are.equal(2, #messages, result.stdout)
      assert.are.equal("second line 1", messages[2])
    end)

    it("show the last N lines with --tail", function()
      local result = observability.run_ok(project,
        { "logs", tostring(execution), "first", "--tail", "3" })

      local messages = observability.messages(result.stdout)
      assert.are.same({ "first line 28", "first line 29", "first line 30" }, messages)
    end)

    it("print every line prefixed by its token", function()
      local result = observability.run_ok(project, { "logs", tostring(execution) })

      local counts = {}
      for line in result.stdout:gmatch("[^\n]+") do
        local token, rest = line:match("^(%w+) | (.*)$")
        assert.is_truthy(token, "no token prefix: " .. line)
        assert.is_truthy(rest:match(observability.TIME_PREFIX), "no time: " .. line)
        counts[token] = (counts[token] or 0) + 1
      end
      assert.are.same({ first = 31, second = 2 }, counts)
    end)
  end)

  describe("of steps that run at once, printed by bgwf logs", function()
    it("interleave by time", function()
      project:write("workflows/ping_pong.lua", PING_PONG_WORKFLOW)
      project:write("actions/ping_pong.lua", PING_PONG_ACTION)
      observability.run_ok(project, { "run", "ping_pong", "--poll-ms", "50" })
      local execution = observability.ids(project)

      local result = observability.run_ok(project, { "logs", tostring(execution) })

      local turns = {}
      for line in result.stdout:gmatch("[^\n]+") do
        local token, rest = line:match("^(%w+) | (.*)$")
        local message = rest and observability.messages(rest)[1] or ""
        if message:match("^turn ") then
          turns[#turns + 1] = token .. ": " .. message
        end
      end
      assert.are.same({
        "ping: turn 1", "pong: turn 1", "ping: turn 2", "pong: turn 2",
      }, turns)
    end)
  end)

  describe("followed with bgwf logs --follow", function()
    it("print a line written after following began", function()
      project:write("workflows/slow.lua", SLOW_WORKFLOW)
      project:write("actions/print_wait_print.lua", PRINT_WAIT_PRINT_ACTION)
      observability.run_ok(project, { "submit", "slow" })
      project:start_executor("slow")
      local status = project:wait_for_step("slow", "RUNNING")
      local log_path = observability.log_path(project, "slow",
        status.execution.id, status.attempt.id, "slow")
      helper.wait_until("the step log has its first line", function()
        return (helper.read_file(log_path) or ""):find("before the release", 1, true)
      end, nil, function() return project:describe() end)

      local follower = project:start(
        { "logs", tostring(status.execution.id), "slow", "--follow" }, { name = "follower" })
      helper.wait_until("the follower prints the first line", function()
        return follower:stdout():find("before the release", 1, true)
      end, nil, function() return follower:describe() end)
      assert.is_falsy(follower:stdout():find("after the release", 1, true))
      assert.is_true(follower:running())

      project:write("release", "")
      helper.wait_until("the follower prints the second line", function()
        return follower:stdout():find("after the release", 1, true)
      end, nil, function() return follower:describe() .. "\n" .. project:describe() end)

      assert.are.equal(0, follower:wait(60))
      local messages = observability.messages(follower:stdout())
      assert.are.equal("before the release", messages[2])
      assert.are.equal("after the release", messages[3])
    end)
  end)

  describe("capped by --log-max-bytes", function()
    local CAP = 1048576

    it("end with a marker and keep the executor's memory flat", function()
      project:write("workflows/flood.lua", FLOOD_WORKFLOW)
      project:write("actions/flood.lua", FLOOD_ACTION)
      observability.run_ok(project, { "submit", "flood" })
      local executor = project:start_executor("flood", { "--log-max-bytes", tostring(CAP) })
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true }, { deadline = 300 })
      -- VmHWM is the executor's peak resident memory over its whole life.
      -- It was 4.5 MiB in a run on a 2-core Debian 12 x86-64 VM while the
      -- step wrote 200 MiB, so 50 MiB leaves room and still catches an
      -- executor that buffers the output.
      local peak_kib = observability.peak_rss_kib(executor.pid)

      assert.are.equal("FINISHED", status.attempt.status)
      assert.are.equal("200\n", project:read("flood_done"))
      assert.is_truthy(peak_kib, executor:describe())
      assert.is_true(peak_kib < 50 * 1024, ("executor VmHWM %d KiB"):format(peak_kib))
      local log_path = observability.log_path(project, "flood",
        status.execution.id, status.attempt.id, "flood")
      local size = observability.size(log_path)
      assert.is_true(size <= CAP, ("log size %d > cap %d"):format(size, CAP))
      assert.is_true(size > CAP / 2, ("log size %d"):format(size))
      local lines = helper.read_lines(log_path)
      local marker = ("[bgwf: log capped at %d bytes for this try; the rest of its output was dropped]")
        :format(CAP)
      assert.are.same({ marker }, observability.messages(lines[#lines]))
      assert.are.equal(0, observability.count_lines_with(log_path, "the last line"))
    end)
  end)
end)

describe("a failed step", function()
  local project, execution

  before_each(function()
    project = helper.new_project()
    project:write("workflows/broken.lua", BROKEN_WORKFLOW)
    project:write("actions/broken.lua", BROKEN_ACTION)
    local result = project:run({ "run", "broken", "--poll-ms", "50" })
    assert.are.equal(1, result.code, result.stderr)
    execution = observability.ids(project)
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("in bgwf status", function()
    it("shows the error on one line", function()
      local result = observability.run_ok(project, { "status", tostring(execution) })

      local line
      for text in result.stdout:gmatch("[^\n]+") do
        if text:match("^broken%s") then
          line = text
        end
      end
      assert.is_truthy(line, result.stdout)
      assert.is_truthy(line:find("FAILED", 1, true), line)
      assert.is_truthy(line:find("broken.lua:2: the input table is empty", 1, true), line)
      assert.is_falsy(result.stdout:find("stack traceback", 1, true), result.stdout)
    end)
  end)

  describe("in bgwf show --step", function()
    it("shows the traceback and the log tail", function()
      local result = observability.run_ok(project,
        { "show", tostring(execution), "--step", "broken" })

      assert.is_truthy(result.stdout:find("broken.lua:2: the input table is empty", 1, true), result.stdout)
      assert.is_truthy(result.stdout:find("stack traceback:", 1, true), result.stdout)
      assert.is_truthy(result.stdout:find("in upvalue 'check_input'", 1, true), result.stdout)
      assert.is_truthy(result.stdout:find("checking the input", 1, true), result.stdout)
    end)

    it("prints the step with tries and log_tail as JSON", function()
      local shown = observability.run_json(project,
        { "show", tostring(execution), "--step", "broken", "--json" })

      local step = shown.step
      assert.is_table(step, "no step object")
      assert.are.equal("broken", step.token)
      assert.are.equal("FAILED", step.status)
      assert.is_truthy(step.error:find("stack traceback:", 1, true), step.error)
      assert.are.equal(1, #step.tries)
      assert.are.equal(1, step.tries[1].try)
      assert.are.equal("FAILED", step.tries[1].status)
      assert.is_truthy(step.tries[1].error:find("the input table is empty", 1, true), step.tries[1].error)
      local tail = observability.messages(step.log_tail)
      assert.are.equal("checking the input", tail[#tail])
    end)
  end)
end)

describe("executor log lines with --log-format json", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/broken.lua", BROKEN_WORKFLOW)
    project:write("actions/broken.lua", BROKEN_ACTION)
  end)

  after_each(function()
    project:cleanup()
  end)

  it("parse as JSON objects with numeric ids", function()
    observability.run_ok(project, { "submit", "broken" })
    local executor = project:start_executor("broken",
      { "--exit-when-idle", "--log-format", "json" })
    assert.are.equal(0, executor:wait(120), executor:describe())
    local execution = observability.ids(project)

    local lines = helper.read_lines(executor.folder .. "/stderr")
    assert.is_true(#lines >= 3, executor:stderr())
    local failure
    for _, line in ipairs(lines) do
      local entry = observability.decode(line, "the log line")
      assert.is_string(entry.time, line)
      assert.is_truthy((entry.time .. " "):match(observability.TIME_PREFIX), line)
      assert.is_string(entry.level, line)
      assert.are.equal(executor.pid, entry.pid, line)
      assert.are.equal("executor", entry.role, line)
      assert.are.equal("integer", math.type(entry.executor), line)
      assert.is_string(entry.message, line)
      if entry.step == "broken" and entry.level == "warn" then
        failure = entry
      end
    end
    assert.is_truthy(failure, executor:stderr())
    assert.are.equal("broken", failure.app)
    assert.are.equal(execution, failure.execution)
    assert.is_truthy(failure.message:find("the input table is empty", 1, true), failure.message)
  end)
end)

describe("executor log lines in the default text format", function()
  local project

  before_each(function()
    project = helper.new_project()
    project:write("workflows/broken.lua", BROKEN_WORKFLOW)
    project:write("actions/broken.lua", BROKEN_ACTION)
  end)

  after_each(function()
    project:cleanup()
  end)

  it("each start with time, level, pid and role", function()
    observability.run_ok(project, { "submit", "broken" })
    local executor = project:start_executor("broken", { "--exit-when-idle" })
    assert.are.equal(0, executor:wait(120), executor:describe())

    local lines = helper.read_lines(executor.folder .. "/stderr")
    assert.is_true(#lines >= 3, executor:stderr())
    local prefix = observability.TIME_PREFIX .. "(%a+)%s+(%d+) (%a+): executor=%d+ "
    for _, line in ipairs(lines) do
      local level, pid, role = line:match(prefix)
      assert.is_truthy(level, "not a log line: " .. line)
      assert.are.equal(tostring(executor.pid), pid, line)
      assert.are.equal("executor", role, line)
    end
  end)
end)
