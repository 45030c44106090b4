-- Specs that only the PostgreSQL backend runs: executors in several
-- processes contending for one database, a server restart in the middle of
-- a run, and heartbeats from a host whose clock is off.
--
-- They run when BGWF_TEST_DB_URL names a PostgreSQL server (see
-- spec/helper.lua). Without it this file declares no tests. The restart
-- spec also needs BGWF_TEST_PG_DIR, the folder of the throwaway cluster
-- that scripts/pg-cluster started. The clock specs shift an executor's
-- wall clock with libfaketime (Debian package faketime) and are pending
-- without it.

local helper = require("spec.helper")

if not helper.postgresql_url then
  return
end

local json = require("dkjson")

local STEP_COUNT = 1000
local EXECUTOR_COUNT = 4

-- A workflow of ctx.count independent steps that each append their token
-- to ctx.ledger.
local fan_out_workflow = [[
return function(wf, ctx)
  local tails = {}
  for i = 1, ctx.count do
    tails[#tails + 1] = wf:step(("s%04d"):format(i), "record", { ledger = ctx.ledger })
  end
  return tails
end
]]

-- A step that waits for a release file, then a step after it.
local handoff_workflow = [[
return function(wf, ctx)
  local slow = wf:step("slow", "wait_for_release", {
    started = "@DIR@/started", release = "@DIR@/release", finished = "@DIR@/finished" })
  return { wf:step("next", "noop", {}, { after = { slow } }) }
end
]]

local function count_lines(project, relative)
  local counts, total = {}, 0
  for _, line in ipairs(project:lines(relative)) do
    local token = line:match("^(%S+)")
    counts[token] = (counts[token] or 0) + 1
    total = total + 1
  end
  return counts, total
end

describe("the PostgreSQL backend", function()
  local project

  before_each(function()
    project = helper.new_project()
  end)

  after_each(function()
    project:cleanup()
  end)

  describe("with executors in several processes started at once", function()
    it("runs each of 1,000 ready steps once", function()
      project:write("workflows/fan_out.lua", fan_out_workflow)
      project:write("actions/record.lua", helper.actions.record)
      local context = json.encode({ count = STEP_COUNT, ledger = project:path("ledger") })
      local submit = project:run({ "submit", "fan_out", "--context", context })
      assert.are.equal(0, submit.code, submit.stderr)

      for i = 1, EXECUTOR_COUNT do
        project:start_executor("fan_out", { "--max-concurrent", "4", "--log-level", "warn" },
          { name = "executor" .. i })
      end
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true },
        { deadline = 600 })
      assert.are.equal("FINISHED", status.attempt.status)

      local counts, total = count_lines(project, "ledger")
      assert.are.equal(STEP_COUNT, total)
      local executors = {}
      for _, step in ipairs(status.steps) do
        assert.are.equal(1, counts[step.token], "runs of " .. step.token)
        assert.are.equal("COMPLETED", step.status, step.token)
        assert.are.equal(1, step.try, "try of " .. step.token)
        executors[step.executor] = true
      end
      assert.are.equal(STEP_COUNT, #status.steps)

      local events = project:run({ "events", "--app", "fan_out", "--limit", "0" })
      assert.are.equal(0, events.code, events.stderr)
      local _, successes = events.stdout:gsub("STEP_SUCCESS", "")
      assert.are.equal(STEP_COUNT, successes)
    end)
  end)

  describe("when the server restarts while a step runs", function()
    local cluster = os.getenv("BGWF_TEST_PG_DIR")

    local function pg_cluster(command)
      local code = helper.shell(("%s/scripts/pg-cluster %s %s >/dev/null"):format(
        helper.quote(helper.repo), command, helper.quote(cluster)))
      assert.are.equal(0, code, "scripts/pg-cluster " .. command)
    end

    it("keeps the result in memory and records it after reconnecting", function()
      if not cluster then
        pending("needs BGWF_TEST_PG_DIR, the folder of a cluster from scripts/pg-cluster")
        return
      end
      project:write("workflows/handoff.lua", handoff_workflow)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      local heartbeats = { "--heartbeat-ms", "200", "--heartbeat-timeout-ms", "2000" }
      local executor = project:start_executor("handoff", heartbeats)
      project:wait_for_file("started")
      local other = project:start_executor("handoff", heartbeats, { name = "other" })

      pg_cluster("stop")
      local ok, problem = pcall(function()
        project:write("release", "")
        project:wait_for_file("finished")
        -- The step's result arrives while the server is down. The outage
        -- outlasts the heartbeat timeout, so neither executor heartbeats in
        -- time, and neither may declare the other dead once it is back.
        helper.sleep(4)
        assert.is_true(executor:running(), "the executor survives the lost connection")
      end)
      pg_cluster("start")
      assert(ok, problem)

      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      assert.are.equal("FINISHED", status.attempt.status)
      local steps = helper.steps_by_token(status)
      assert.are.equal("COMPLETED", steps.slow.status)
      assert.are.equal(1, steps.slow.try)
      assert.are.equal("COMPLETED", steps.next.status)
      assert.is_true(executor:running(), "the executor goes on after reconnecting")
      assert.is_true(other:running(), "the other executor goes on after reconnecting")
      assert.is_truthy(executor:stderr():find("reconnected to", 1, true), executor:stderr())
      local events = project:run({ "events", "--app", "handoff" })
      assert.is_nil(events.stdout:find("DIED_UNCLEAN", 1, true), events.stdout)
      for _, process in ipairs({ executor, other }) do
        assert.is_nil(process:stderr():find("declared executor", 1, true), process:describe())
        assert.is_nil(process:stderr():find("declared dead", 1, true), process:describe())
      end
    end)
  end)

  describe("bgwf migrate", function()
    local function status_of(db)
      local result = project:run({ "status", "--json", "--db", db, "1" })
      assert.are.equal(0, result.code, result.stderr)
      local decoded = json.decode(result.stdout)
      -- Only the location differs between the two stores.
      decoded.db = nil
      return decoded
    end

    it("copies an SQLite store that executors then resume", function()
      local sqlite_db = project:path("old.db")
      project:write("workflows/handoff.lua", handoff_workflow)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      project:write("release", "")
      local ran = project:run({ "run", "handoff", "--db", sqlite_db })
      assert.are.equal(0, ran.code, ran.stderr)
      os.remove(project:path("release"))
      assert.are.equal(0, project:run({ "submit", "handoff", "--new-execution",
        "--db", sqlite_db }).code)

      local migrated = project:run({ "migrate", "--from", "sqlite:" .. sqlite_db,
        "--to", project.db })
      assert.are.equal(0, migrated.code, migrated.stderr)
      assert.is_truthy(migrated.stdout:find("steps%s+4 rows"), migrated.stdout)
      assert.are.same(status_of(sqlite_db), status_of(project.db))

      local again = project:run({ "migrate", "--from", "sqlite:" .. sqlite_db,
        "--to", project.db })
      assert.are.equal(1, again.code)
      assert.is_truthy(again.stderr:find("already holds workflows", 1, true), again.stderr)

      -- The second execution goes on in PostgreSQL, with new ids after the
      -- copied ones.
      project:write("release", "")
      project:start_executor("handoff")
      local status = project:wait_for_attempt({ FINISHED = true, FAILED = true },
        { execution = 2 })
      assert.are.equal("FINISHED", status.attempt.status)
      local executors = project:run({ "executors", "--json" })
      assert.are.equal(0, executors.code, executors.stderr)
      assert.are.equal(2, #json.decode(executors.stdout).executors)
    end)
  end)

  describe("with an executor whose host clock is off", function()
    -- libfaketime from Debian's faketime package, under the multiarch
    -- folder of this machine.
    local pipe = io.popen("ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null")
    local libfaketime = pipe:read("l")
    pipe:close()
    local has_faketime = libfaketime ~= nil and libfaketime ~= ""

    -- Environment that shifts the wall clock of bgwf by offset (e.g.
    -- "-600s") through libfaketime, leaving the monotonic clock alone.
    local function skewed(offset)
      return {
        env = {
          FAKETIME = offset,
          FAKETIME_DONT_FAKE_MONOTONIC = "1",
          LD_PRELOAD = libfaketime,
        },
      }
    end

    local function heartbeat_args(timeout_ms)
      return { "--heartbeat-ms", "200", "--heartbeat-timeout-ms", tostring(timeout_ms) }
    end

    it("is not declared dead when its clock is behind", function()
      if not has_faketime then
        pending("needs faketime (Debian package faketime)")
        return
      end
      project:write("workflows/handoff.lua", handoff_workflow)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      -- Ten minutes behind: heartbeats stamped with this host's clock would
      -- look ten minutes old to the other executor at once.
      local behind = project:start_executor("handoff", heartbeat_args(3000),
        skewed("-600s"))
      project:wait_for_file("started")
      local watcher = project:start_executor("other_app", heartbeat_args(3000),
        { name = "watcher" })

      -- Several heartbeat timeouts pass while the watcher reaps.
      helper.sleep(8)
      assert.is_true(watcher:running(), watcher:describe())
      local status = project:status()
      assert.are.equal("RUNNING", helper.steps_by_token(status).slow.status)
      local events = project:run({ "events", "--app", "handoff" })
      assert.is_nil(events.stdout:find("DIED_UNCLEAN", 1, true), events.stdout)
      for _, process in ipairs({ executor, other }) do
        assert.is_nil(process:stderr():find("declared executor", 1, true), process:describe())
        assert.is_nil(process:stderr():find("declared dead", 1, true), process:describe())
      end

      project:write("release", "")
      status = project:wait_for_attempt({ FINISHED = true, FAILED = true })
      assert.are.equal("FINISHED", status.attempt.status)
      assert.is_true(behind:running(), behind:describe())
    end)

    it("is declared dead when it stops and its clock is ahead", function()
      if not has_faketime then
        pending("needs faketime (Debian package faketime)")
        return
      end
      project:write("workflows/handoff.lua", handoff_workflow)
      project:write("actions/wait_for_release.lua", helper.actions.wait_for_release)
      assert.are.equal(0, project:run({ "submit", "handoff" }).code)
      -- Ten minutes ahead: heartbeats stamped with this host's clock would
      -- keep it alive for ten minutes after it died.
      local ahead = project:start_executor("handoff", heartbeat_args(2000), skewed("+600s"))
      project:wait_for_file("started")
      project:start_executor("other_app", heartbeat_args(2000), { name = "watcher" })

      ahead:kill_all()
      local status = project:wait_for_step("slow", "FAILED")
      local slow = helper.steps_by_token(status).slow
      assert.is_truthy(slow.error:find("stopped heartbeating", 1, true), slow.error)
      assert.are.equal("FAILED", project:wait_for_attempt({ FAILED = true }).attempt.status)
    end)
  end)
end)
