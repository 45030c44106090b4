-- Chaos test for bgwf, started by chaos/run. Executors run workflows with
-- random dependencies, preconditions, short sleeps and flaky steps while
-- this driver kills a random executor with SIGKILL every few seconds, starts
-- a replacement and submits failed executions again. At the end it checks that
--   * every execution is COMPLETE,
--   * no step (execution, token) ran twice at the same time,
--   * no step COMPLETED in one attempt ran again in a later attempt, and
--     each step was COMPLETED in exactly one attempt,
--   * every process of a killed executor died with it,
--   * `PRAGMA integrity_check` of the database prints ok,
-- and prints figures. Exit status: 0 when every check passed, 1 otherwise,
-- 2 on a usage error.
--
-- Every step appends a "start" line and an "end" line to a ledger file.
-- Lines are appended with O_APPEND, one write each, so their order is the
-- order of events. The driver appends "kill executor_pid=P" once every
-- process of a killed executor is gone, which closes that executor's open
-- runs. Overlaps are computed from that order, never from clocks.
--
-- Usage: chaos/run [--steps N] [--seconds LIMIT] [--kill-interval MIN-MAX]
--                  [--executions N] [--executors N] [--seed S] [--keep]
-- Environment: BGWF_BIN (default build/bgwf of this repository), and
-- BGWF_CHAOS_SESSIONS, a file to which the session id of every executor
-- started is appended, so chaos/run can kill them if this driver is killed.

local function script_folder()
  local source = arg and arg[0] or "chaos/driver.lua"
  local folder = source:match("^(.*)/[^/]*$") or "."
  if folder:sub(1, 1) ~= "/" then
    local pipe = io.popen("pwd")
    folder = pipe:read("*l") .. "/" .. folder
    pipe:close()
  end
  return folder
end

local repo = script_folder():gsub("/%./", "/"):gsub("/chaos$", "")
package.path = repo .. "/spec/?.lua;" .. package.path

local helper = require("helper")
local robustness = require("robustness_helper")
local json = require("dkjson")

local USAGE = [[
Usage: chaos/run [--steps N] [--seconds LIMIT] [--kill-interval MIN-MAX]
                 [--executions N] [--executors N] [--seed S] [--keep]

  --steps N              steps in total, split over the executions (default 2000)
  --seconds LIMIT        fail when the executions are not COMPLETE after LIMIT
                         seconds (default 900)
  --kill-interval MIN-MAX  seconds between two executor kills, drawn uniformly
                         (default 1-3)
  --executions N         executions (workflows) the steps are split over
                         (default 6)
  --executors N          executors running at any time (default 3)
  --seed S               seed of the random choices (default: the clock)
  --keep                 keep the project folder and print its path
]]

local function usage_error(message)
  io.stderr:write("chaos/run: ", message, "\n", USAGE)
  os.exit(2)
end

local function parse_options(argv)
  local options = {
    steps = 2000,
    seconds = 900,
    kill_min = 1,
    kill_max = 3,
    executions = 6,
    executors = 3,
    seed = nil,
    keep = false,
  }
  local i = 1
  local function value_of(name)
    i = i + 1
    local value = argv[i]
    if value == nil then
      usage_error(name .. " needs a value")
    end
    return value
  end
  local function number_of(name, minimum)
    local value = tonumber(value_of(name))
    if not value or value < minimum then
      usage_error(("%s must be a number of at least %s"):format(name, minimum))
    end
    return value
  end
  while i <= #argv do
    local name = argv[i]
    if name == "--steps" then
      options.steps = math.floor(number_of(name, 1))
    elseif name == "--seconds" then
      options.seconds = number_of(name, 1)
    elseif name == "--kill-interval" then
      local text = value_of(name)
      local low, high = text:match("^([%d.]+)%-([%d.]+)$")
      low, high = tonumber(low), tonumber(high)
      if not low or not high or low <= 0 or high < low then
        usage_error("--kill-interval must be MIN-MAX in seconds, for example 1-3")
      end
      options.kill_min, options.kill_max = low, high
    elseif name == "--executions" then
      options.executions = math.floor(number_of(name, 1))
    elseif name == "--executors" then
      options.executors = math.floor(number_of(name, 1))
    elseif name == "--seed" then
      options.seed = math.floor(number_of(name, 0))
    elseif name == "--keep" then
      options.keep = true
    elseif name == "--help" or name == "-h" then
      io.stdout:write(USAGE)
      os.exit(0)
    else
      usage_error("unknown option " .. name)
    end
    i = i + 1
  end
  options.executions = math.min(options.executions, options.steps)
  return options
end

------------------------------------------------------------------------------
-- The project: one workflow, built from a seed, and two actions

-- The DAG is built from ctx.seed by a small linear congruential generator,
-- so submitting the same context again builds the same DAG.
local WORKFLOW = [[
return function(wf, ctx)
  local state = ctx.seed
  local function random(n)
    state = (state * 1103515245 + 12345) % 2147483648
    return state % n
  end
  local handles = {}
  for i = 1, ctx.count do
    local after = {}
    if i > 1 then
      for _ = 1, random(3) do
        after[#after + 1] = handles[i - 1 - random(math.min(i - 1, 40))]
      end
    end
    local guarded = random(4) == 0
    local context = {
      ledger = ctx.ledger,
      markers = ctx.markers,
      sleep = (100 + random(500)) / 1000,
      fail_once = random(20) == 0,
    }
    handles[i] = wf:step(("s%05d"):format(i), guarded and "guarded_work" or "work", context, {
      after = after,
      cooldown = 0.2,
      retries = random(10) == 0 and 0 or 2,
      retry_backoff = { initial = 0.2, factor = 2, max = 1 },
    })
  end
  return handles
end
]]

-- Appends a "start" and an "end" line around a short sleep. A step process
-- is forked by the executor's spawner process, itself a child of the
-- executor, so the executor's pid is the parent of the step's parent (field
-- 4 of /proc/PID/stat).
local WORK_ACTION = [[
local system = require("system")

local function append(path, line)
  local file = assert(io.open(path, "a"))
  file:write(line, "\n")
  file:close()
end

local function pid_and_parent(stat_path)
  local file = assert(io.open(stat_path))
  local stat = file:read("l")
  file:close()
  return stat:match("^(%d+) %(.*%) %a (%d+)")
end

local action = {}

function action.execute(step, ctx)
  local pid, spawner = pid_and_parent("/proc/self/stat")
  local _, executor = pid_and_parent("/proc/" .. spawner .. "/stat")
  local fields = ("execution=%d token=%s attempt=%d try=%d pid=%s spawner_pid=%s executor_pid=%s")
    :format(step.execution, step.token, step.attempt, step.try, pid, spawner, executor)
  append(ctx.ledger, "start " .. fields)
  system.sleep(ctx.sleep)
  -- A step with fail_once fails its first run across all attempts, which
  -- a marker file records. Without retries, that fails the attempt.
  local marker = ("%s/%d_%s"):format(ctx.markers, step.execution, step.token)
  local seen = io.open(marker)
  if ctx.fail_once and not seen then
    io.open(marker, "w"):close()
    append(ctx.ledger, "end " .. fields .. " failed=1")
    error("failing the first run on purpose")
  end
  if seen then
    seen:close()
  end
  append(ctx.ledger, "end " .. fields)
end

return action
]]

-- Makes the work wait for a precondition that is true about half the time.
-- The seed mixes in the pid because every precondition process is forked
-- from the same executor state.
local PRECONDITION = [[
function action.precondition(ctx)
  local pid = tonumber(io.open("/proc/self/stat"):read("l"):match("^(%d+)"))
  math.randomseed(os.time(), pid)
  return math.random() < 0.5
end

]]

local GUARDED_ACTION = WORK_ACTION:gsub("\nreturn action\n$", function()
  return "\n" .. PRECONDITION .. "return action\n"
end)

------------------------------------------------------------------------------
-- Driver

local Chaos = {}
Chaos.__index = Chaos

local function new_chaos(options)
  local self = setmetatable({
    options = options,
    project = helper.new_project(),
    executors = {},
    executions = {},
    figures = {
      steps = 0,
      kills = 0,
      executors_started = 0,
      resubmits = 0,
      runs_started = 0,
      retries = 0,
      attempts = 0,
    },
    violations = {},
    killed_pids = {},
  }, Chaos)
  self.ledger = self.project:path("ledger")
  self.markers = self.project:path("markers")
  return self
end

function Chaos:violation(text)
  self.violations[#self.violations + 1] = text
  io.stderr:write("chaos: VIOLATION: ", text, "\n")
end

function Chaos:write_project()
  local project = self.project
  project:write("workflows/chaos_a.lua", WORKFLOW)
  project:write("workflows/chaos_b.lua", WORKFLOW)
  project:write("actions/work.lua", WORK_ACTION)
  project:write("actions/guarded_work.lua", GUARDED_ACTION)
  io.open(self.ledger, "w"):close()
  helper.shell("mkdir -p " .. helper.quote(self.markers))
end

function Chaos:start_executor()
  local executor = self.project:start_executor("chaos_a,chaos_b", {
    "--heartbeat-ms", "200",
    "--heartbeat-timeout-ms", "1500",
    "--kill-grace-ms", "500",
    "--max-concurrent", "4",
    "--log-level", "warn",
  })
  self.executors[#self.executors + 1] = executor
  local sessions_file = os.getenv("BGWF_CHAOS_SESSIONS")
  if sessions_file and executor.group then
    local file = assert(io.open(sessions_file, "a"))
    file:write(executor.group, "\n")
    file:close()
  end
  self.figures.executors_started = self.figures.executors_started + 1
  return executor
end

function Chaos:live_executors()
  local live = {}
  for _, executor in ipairs(self.executors) do
    if not executor.killed and executor:running() then
      live[#live + 1] = executor
    end
  end
  return live
end

-- Submit (or submit again) one execution. Return true when it was stored.
function Chaos:submit(execution)
  local result = self.project:run({ "submit", execution.app, "--scope", execution.scope,
    "--context", execution.context })
  if result.code ~= 0 then
    io.stderr:write(("chaos: submit %s --scope %s exited %d: %s\n"):format(
      execution.app, execution.scope, result.code, result.stderr))
    return false
  end
  execution.id = tonumber(result.stdout:match("execution (%d+)"))
  execution.attempt = tonumber(result.stdout:match("attempt (%d+)"))
  self.figures.attempts = self.figures.attempts + 1
  return true
end

function Chaos:submit_all()
  local options = self.options
  local base = options.steps // options.executions
  local extra = options.steps % options.executions
  for i = 1, options.executions do
    local count = base + (i <= extra and 1 or 0)
    local execution = {
      app = (i % 2 == 1) and "chaos_a" or "chaos_b",
      scope = "part" .. i,
      count = count,
    }
    execution.context = json.encode({
      count = count,
      seed = math.random(1, 2147483646),
      ledger = self.ledger,
      markers = self.markers,
    })
    assert(self:submit(execution), "the first submit failed")
    self.executions[#self.executions + 1] = execution
    self.figures.steps = self.figures.steps + count
  end
end

-- Kill one executor with SIGKILL (the bgwf process alone: its steps must
-- die with it), wait until every process of its session is gone, then
-- record the kill in the ledger and start a replacement.
function Chaos:kill_one()
  local live = self:live_executors()
  if #live == 0 then
    return
  end
  local victim = live[math.random(#live)]
  victim.killed = true
  victim:signal("KILL")
  self.figures.kills = self.figures.kills + 1
  local gone = pcall(helper.wait_until, "the session of executor pid " .. victim.pid .. " is empty",
    function()
      -- The launcher shell of the session writes the exit code and exits.
      return #robustness.session_members(victim.group) == 0
    end, 20)
  if not gone then
    local survivors = robustness.session_members(victim.group)
    self:violation(("processes %s of killed executor pid %d are still alive after 20 s"):format(
      table.concat(survivors, ","), victim.pid))
    robustness.kill_session(victim.group)
  end
  local file = assert(io.open(self.ledger, "a"))
  file:write(("kill executor_pid=%d\n"):format(victim.pid))
  file:close()
  self.killed_pids[victim.pid] = true
  self:start_executor()
end

-- Look at every execution; submit a new attempt for each whose attempt
-- FAILED. Return true when every execution is COMPLETE.
function Chaos:check_executions()
  local result = self.project:run({ "list", "--json", "--limit", "0" })
  if result.code ~= 0 then
    io.stderr:write("chaos: bgwf list exited ", result.code, ": ", result.stderr, "\n")
    return false
  end
  local decoded = json.decode(result.stdout)
  if type(decoded) ~= "table" then
    return false
  end
  local by_id = {}
  for _, row in ipairs(decoded.executions or {}) do
    by_id[row.id] = row
  end
  local complete = 0
  for _, execution in ipairs(self.executions) do
    local row = by_id[execution.id]
    execution.row = row
    if row and row.status == "COMPLETE" then
      complete = complete + 1
    elseif row and row.attempt and row.attempt.status == "FAILED" then
      if self:submit(execution) then
        self.figures.resubmits = self.figures.resubmits + 1
      end
    elseif row and row.attempt and row.attempt.status == "FAIL_PENDING" then
      self:check_fail_pending(execution, row.attempt.id)
    end
  end
  return complete == #self.executions
end

-- Steps of this workflow run for at most about a second and a dead
-- executor is noticed after 1.5 s, so an attempt that stays FAIL_PENDING
-- for STUCK_SECONDS with no RUNNING step will never end by itself.
local STUCK_SECONDS = 60

function Chaos:check_fail_pending(execution, attempt)
  if execution.fail_pending_attempt ~= attempt then
    execution.fail_pending_attempt = attempt
    execution.fail_pending_since = helper.now()
    return
  end
  if execution.stuck or helper.now() - execution.fail_pending_since < STUCK_SECONDS then
    return
  end
  local rows = self:query(("SELECT status, count(*), sum(try > 0) FROM steps"
    .. " WHERE attempt_id = %d GROUP BY status"):format(attempt))
  local running = false
  for _, row in ipairs(rows) do
    if row:match("^RUNNING ") then
      running = true
    end
  end
  if not running then
    execution.stuck = true
    self.stuck = true
    self:violation(("attempt %d of execution %d has been FAIL_PENDING for %d s with no RUNNING"
      .. " step (steps by status, count, tried: %s)"):format(
        attempt, execution.id, STUCK_SECONDS, table.concat(rows, "; ")))
  end
end

-- Run executors and kill them until every execution is COMPLETE or the time
-- limit passes. Return true when every execution is COMPLETE.
function Chaos:drive()
  local options = self.options
  for _ = 1, options.executors do
    self:start_executor()
  end
  local function next_kill_time()
    return helper.now() + options.kill_min + math.random() * (options.kill_max - options.kill_min)
  end
  local deadline = self.started + options.seconds
  local kill_at = next_kill_time()
  local check_at = helper.now()
  while helper.now() < deadline do
    if helper.now() >= check_at then
      if self:check_executions() then
        return true
      end
      if self.stuck then
        return false
      end
      check_at = helper.now() + 0.5
    end
    if helper.now() >= kill_at then
      self:kill_one()
      kill_at = next_kill_time()
    end
    -- An executor that exits by itself is a failure too: replace it and
    -- report it.
    for _, executor in ipairs(self.executors) do
      if not executor.killed and not executor.reported and not executor:running() then
        executor.reported = true
        self:violation(("executor pid %d exited by itself with code %s:\n%s"):format(
          executor.pid, tostring(executor:exit_code()), executor:describe()))
        self:start_executor()
      end
    end
    helper.sleep(0.1)
  end
  return false
end

-- Stop the executors that are still running: SIGTERM, then SIGKILL to
-- their whole sessions.
function Chaos:stop_executors()
  for _, executor in ipairs(self:live_executors()) do
    executor:signal("TERM")
  end
  for _, executor in ipairs(self:live_executors()) do
    pcall(executor.wait, executor, 60)
  end
  for _, executor in ipairs(self.executors) do
    robustness.kill_session(executor.group)
  end
end

------------------------------------------------------------------------------
-- Checks

function Chaos:query(sql)
  local pipe = io.popen(("sqlite3 -readonly -separator ' ' %s %s 2>&1"):format(
    helper.quote(self.project.db), helper.quote(sql)))
  local rows = {}
  for line in pipe:lines() do
    rows[#rows + 1] = line
  end
  pipe:close()
  return rows
end

-- No (execution, token) may have two runs open at once. A run opens at its
-- "start" line and closes at its "end" line, or at the "kill" line of its
-- executor.
function Chaos:check_overlaps(records)
  local open = {}
  local ended = {}
  local overlaps = 0
  for _, record in ipairs(records) do
    if record.event == "start" then
      self.figures.runs_started = self.figures.runs_started + 1
      if record.try > 1 then
        self.figures.retries = self.figures.retries + 1
      end
      local key = record.execution .. " " .. record.token
      local running = open[key]
      if running then
        overlaps = overlaps + 1
        self:violation(("step %s of execution %d started while it still ran:\n  %s\n  %s"):format(
          record.token, record.execution, running.line, record.line))
      end
      open[key] = record
    elseif record.event == "end" then
      local key = record.execution .. " " .. record.token
      local running = open[key]
      if running and running.pid == record.pid then
        open[key] = nil
        ended[#ended + 1] = record
      else
        self:violation("an end without an open start: " .. record.line)
      end
    elseif record.event == "kill" then
      if not self.killed_pids[record.executor_pid] then
        self:violation("a kill line for an executor that was never killed: " .. record.line)
      end
      for key, running in pairs(open) do
        if running.executor_pid == record.executor_pid then
          open[key] = nil
        end
      end
    end
  end
  for _, running in pairs(open) do
    self:violation("a run never ended although its executor was not killed: " .. running.line)
  end
  return overlaps
end

-- A step COMPLETED in attempt A must not start in an attempt after A, and
-- each step must be COMPLETED in exactly one attempt.
function Chaos:check_completed_once(records)
  local completed_in = {}
  for _, row in ipairs(self:query(
      "SELECT a.execution_id, s.token, s.attempt_id, s.status FROM steps s"
      .. " JOIN attempts a ON a.id = s.attempt_id WHERE s.status = 'COMPLETED'")) do
    local execution, token, attempt = row:match("^(%d+) (%S+) (%d+)")
    if not execution then
      self:violation("unexpected sqlite3 output: " .. row)
    else
      local key = execution .. " " .. token
      if completed_in[key] then
        self:violation(("step %s of execution %s is COMPLETED in attempts %d and %s"):format(
          token, execution, completed_in[key], attempt))
      end
      completed_in[key] = tonumber(attempt)
    end
  end
  local expected = 0
  for _, execution in ipairs(self.executions) do
    expected = expected + execution.count
  end
  local count = 0
  for _ in pairs(completed_in) do
    count = count + 1
  end
  if count ~= expected then
    self:violation(("%d steps are COMPLETED in some attempt; expected %d"):format(count, expected))
  end
  for _, record in ipairs(records) do
    if record.event == "start" then
      local attempt = completed_in[record.execution .. " " .. record.token]
      if attempt and record.attempt > attempt then
        self:violation(("step %s of execution %d, COMPLETED in attempt %d, ran again: %s"):format(
          record.token, record.execution, attempt, record.line))
      end
    end
  end
end

function Chaos:check_integrity()
  local rows = self:query("PRAGMA integrity_check")
  local text = table.concat(rows, "\n")
  if text ~= "ok" then
    self:violation("PRAGMA integrity_check printed: " .. text)
  end
end

function Chaos:check_all_complete(finished)
  if not finished and not self.stuck then
    self:violation(("not every execution was COMPLETE after %d s"):format(self.options.seconds))
  end
  self:check_executions()
  for _, execution in ipairs(self.executions) do
    local row = execution.row
    if not row or row.status ~= "COMPLETE" then
      self:violation(("execution %s (%s, scope %s) is %s, attempt %s"):format(
        tostring(execution.id), execution.app, execution.scope,
        row and row.status or "missing",
        row and row.attempt and (row.attempt.id .. " " .. row.attempt.status) or "-"))
    end
  end
end

function Chaos:print_figures(wall)
  local figures = self.figures
  local lines = {
    ("steps               %d in %d executions"):format(figures.steps, #self.executions),
    ("step runs started   %d"):format(figures.runs_started),
    ("retries             %d (runs with try > 1)"):format(figures.retries),
    ("executor kills      %d"):format(figures.kills),
    ("executors started   %d"):format(figures.executors_started),
    ("resubmits           %d"):format(figures.resubmits),
    ("attempts            %d"):format(figures.attempts),
    ("wall time           %.1f s"):format(wall),
    ("violations          %d"):format(#self.violations),
  }
  io.stdout:write("chaos: ", table.concat(lines, "\nchaos: "), "\n")
end

------------------------------------------------------------------------------

local function main()
  local options = parse_options(arg)
  options.seed = options.seed or math.floor(helper.now() * 1000) % 2147483647
  math.randomseed(options.seed)
  io.stdout:write(("chaos: %d steps, %d executors, a kill every %g-%g s, limit %d s, seed %d\n")
    :format(options.steps, options.executors, options.kill_min, options.kill_max,
      options.seconds, options.seed))

  local chaos = new_chaos(options)
  chaos.started = helper.now()
  local ok, problem = pcall(function()
    chaos:write_project()
    chaos:submit_all()
    local finished = chaos:drive()
    chaos:stop_executors()
    local records = robustness.read_ledger(chaos.ledger)
    chaos:check_all_complete(finished)
    chaos:check_overlaps(records)
    chaos:check_completed_once(records)
    chaos:check_integrity()
  end)
  local wall = helper.now() - chaos.started
  if not ok then
    chaos:violation("the driver raised: " .. tostring(problem))
  end
  chaos:stop_executors()
  chaos:print_figures(wall)
  if options.keep then
    io.stdout:write("chaos: kept project folder ", chaos.project.dir, "\n")
  else
    robustness.cleanup(chaos.project)
  end
  if #chaos.violations > 0 then
    io.stdout:write("chaos: FAILED\n")
    return 1
  end
  io.stdout:write("chaos: PASSED\n")
  return 0
end

os.exit(main())
