-- Test support for the busted specs: throwaway project folders, running the
-- real bgwf binary in the foreground or in the background, signals, and
-- polling `bgwf status --json` until a condition holds.
--
-- Every project lives in a fresh folder under /tmp. Its root is the search
-- path (BGWF_PATH) and contains bgwf.db, workflows/ and actions/. Captured
-- output and process bookkeeping go to <root>/.spec/, which bgwf never reads.

local json = require("dkjson")
local system = require("system")

local helper = {}

-- Seconds a wait_until call waits before it fails the test. The machine is
-- shared and noisy, so the deadline is generous. No test asserts on durations.
helper.DEFAULT_DEADLINE = 60

-- Seconds after which a foreground bgwf command is stopped with SIGTERM
-- (and SIGKILL 10 s later), so a hung binary fails the test it is in
-- instead of hanging the whole run.
helper.COMMAND_TIMEOUT = 180

local POLL_INTERVAL = 0.1

local function spec_folder()
  local source = debug.getinfo(1, "S").source:gsub("^@", "")
  local folder = source:match("^(.*)/[^/]*$") or "."
  if folder:sub(1, 1) ~= "/" then
    local pwd = io.popen("pwd"):read("*l")
    folder = pwd .. "/" .. folder
  end
  return folder
end

helper.repo = spec_folder():gsub("/%./", "/"):gsub("/spec$", "")
helper.bin = os.getenv("BGWF_BIN") or (helper.repo .. "/build/bgwf")

-- Quote a string for /bin/sh.
function helper.quote(text)
  return "'" .. (tostring(text):gsub("'", "'\\''")) .. "'"
end
local quote = helper.quote

local function quote_all(list)
  local quoted = {}
  for i, item in ipairs(list) do
    quoted[i] = quote(item)
  end
  return table.concat(quoted, " ")
end

-- Run a shell command and return its exit code.
local function shell(command)
  local ok, termination, code = os.execute(command)
  if termination == "signal" then
    return 128 + code
  end
  if ok then
    return 0
  end
  return code
end
helper.shell = shell

function helper.read_file(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local text = file:read("a")
  file:close()
  return text
end

function helper.file_exists(path)
  local file = io.open(path, "rb")
  if file then
    file:close()
    return true
  end
  return false
end

-- Return the lines of a file as a list (empty when the file is missing).
function helper.read_lines(path)
  local lines = {}
  local text = helper.read_file(path)
  if text then
    for line in text:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
  end
  return lines
end

function helper.sleep(seconds)
  system.sleep(seconds)
end

function helper.now()
  return system.gettime()
end

function helper.hostname()
  local text = helper.read_file("/proc/sys/kernel/hostname")
  return (text or ""):gsub("%s+$", "")
end

-- Return true while a process with this pid exists. A zombie counts as gone.
function helper.process_alive(pid)
  local stat = helper.read_file("/proc/" .. tostring(pid) .. "/stat")
  if not stat then
    return false
  end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

-- Index the steps of a decoded `status --json` object by token.
function helper.steps_by_token(status)
  local steps = {}
  for _, step in ipairs(status and status.steps or {}) do
    steps[step.token] = step
  end
  return steps
end

-- Return the sorted list of tokens in a decoded `status --json` object.
function helper.tokens(status)
  local tokens = {}
  for _, step in ipairs(status and status.steps or {}) do
    tokens[#tokens + 1] = step.token
  end
  table.sort(tokens)
  return tokens
end

-- Poll probe() every 0.1 s until it returns a truthy value, and return that
-- value. On timeout, raise an error that names the awaited condition and
-- adds whatever describe_state() returns, to explain the failure.
function helper.wait_until(description, probe, deadline_seconds, describe_state)
  local deadline = helper.now() + (deadline_seconds or helper.DEFAULT_DEADLINE)
  while true do
    local value = probe()
    if value then
      return value
    end
    if helper.now() > deadline then
      local message = ("timed out after %d s waiting until %s"):format(
        deadline_seconds or helper.DEFAULT_DEADLINE, description)
      if describe_state then
        message = message .. "\n" .. describe_state()
      end
      error(message, 2)
    end
    helper.sleep(POLL_INTERVAL)
  end
end

------------------------------------------------------------------------------
-- Background processes

local Process = {}
Process.__index = Process

-- Return the exit code once the process has exited, or nil while it runs.
function Process:exit_code()
  local text = helper.read_file(self.folder .. "/rc")
  if text and text:match("%d") then
    return tonumber(text:match("%d+"))
  end
  return nil
end

function Process:running()
  return self:exit_code() == nil and helper.process_alive(self.pid)
end

-- Send a signal by name ("TERM", "KILL", "INT") to the bgwf process only.
function Process:signal(name)
  shell(("kill -%s %d 2>/dev/null"):format(name, self.pid))
end

-- Wait for the process to exit and return its exit code.
function Process:wait(deadline_seconds)
  return helper.wait_until(self.name .. " (pid " .. self.pid .. ") exits",
    function() return self:exit_code() end,
    deadline_seconds,
    function() return self:describe() end)
end

function Process:stderr()
  return helper.read_file(self.folder .. "/stderr") or ""
end

function Process:stdout()
  return helper.read_file(self.folder .. "/stdout") or ""
end

function Process:describe()
  local log = self:stderr()
  if #log > 4000 then
    log = "..." .. log:sub(-4000)
  end
  return ("--- %s (pid %d) stderr:\n%s"):format(self.name, self.pid, log)
end

-- Kill the process and everything it started (its whole process group).
function Process:kill_all()
  if self:exit_code() == nil then
    shell(("kill -KILL %d 2>/dev/null"):format(self.pid))
  end
  if self.group then
    shell(("kill -KILL -%d 2>/dev/null"):format(self.group))
  end
end

------------------------------------------------------------------------------
-- Projects

local Project = {}
Project.__index = Project

-- The backend switch. With BGWF_TEST_DB_URL set to the URL of a maintenance
-- database on a PostgreSQL server (e.g. postgresql://postgres@/postgres?
-- host=/tmp/x&port=5433, as scripts/pg-cluster prints), every project gets
-- a fresh database on that server instead of an SQLite file, and cleanup()
-- drops it. Without it the specs use SQLite.
helper.postgresql_url = os.getenv("BGWF_TEST_DB_URL")
if helper.postgresql_url == "" then
  helper.postgresql_url = nil
end

-- Return true when location names a PostgreSQL database.
function helper.is_postgresql(location)
  return location ~= nil and (location:match("^postgresql://") or location:match("^postgres://")) ~= nil
end

-- Return the URL of the database named name on the server of url.
function helper.database_url(url, name)
  local prefix, rest = url:match("^(postgres[a-z]*://[^/?]*/)[^?]*(.*)$")
  assert(prefix, "not a PostgreSQL URL with a database path: " .. url)
  return prefix .. name .. rest
end

-- Run SQL through psql on the database at url and return its unaligned
-- output, or raise with psql's message.
function helper.psql(url, sql)
  local pipe = io.popen(("psql -X -q -At -v ON_ERROR_STOP=1 %s -c %s 2>&1"):format(
    quote(url), quote(sql)))
  local output = pipe:read("a")
  local ok = pipe:close()
  assert(ok, ("psql failed on %s: %s"):format(sql, output))
  return output
end

-- Create a fresh database for a project in folder root and return its URL,
-- or nil when the specs run on SQLite.
function helper.new_database(root)
  if not helper.postgresql_url then
    return nil
  end
  local name = "bgwf_spec_" .. root:match("([^./]+)$")
  helper.psql(helper.postgresql_url, ('CREATE DATABASE "%s"'):format(name))
  return helper.database_url(helper.postgresql_url, name), name
end

-- Create an empty project in a fresh temporary folder.
function helper.new_project()
  assert(helper.file_exists(helper.bin),
    "bgwf binary not found at " .. helper.bin .. ": run scripts/build, or set BGWF_BIN")
  local pipe = io.popen("mktemp -d /tmp/bgwf-spec.XXXXXX")
  local root = pipe:read("*l")
  pipe:close()
  assert(root and root ~= "", "mktemp -d failed")
  local project = setmetatable({
    dir = root,
    db = helper.new_database(root) or (root .. "/bgwf.db"),
    scratch = root .. "/.spec",
    processes = {},
    runs = 0,
  }, Project)
  shell("mkdir -p " .. quote(project.scratch))
  return project
end

function Project:path(relative)
  return self.dir .. "/" .. relative
end

-- Write a file under the project root, creating its folders. Every "@DIR@"
-- in the text becomes the project root, so actions can use absolute paths,
-- and every "@DB@" the project database (a file path or a PostgreSQL URL).
function Project:write(relative, text)
  local path = self:path(relative)
  local folder = path:match("^(.*)/[^/]*$")
  shell("mkdir -p " .. quote(folder))
  local file = assert(io.open(path, "wb"))
  text = text:gsub("@DIR@", function() return self.dir end)
  file:write((text:gsub("@DB@", function() return self.db end)))
  file:close()
  return path
end

function Project:read(relative)
  return helper.read_file(self:path(relative))
end

function Project:lines(relative)
  return helper.read_lines(self:path(relative))
end

function Project:exists(relative)
  return helper.file_exists(self:path(relative))
end

-- Build "env NAME=value ..." for a command. opts.env adds or overrides
-- variables; opts.plain_env = true leaves BGWF_DB and BGWF_PATH unset, so a
-- test can pass --db and --path itself.
function Project:env_prefix(opts)
  local variables = {}
  local unset = { "-u BGWF_DB", "-u BGWF_PATH", "-u BGWF_TEST_HOOKS" }
  if not (opts and opts.plain_env) then
    variables.BGWF_DB = self.db
    variables.BGWF_PATH = self.dir
  end
  for name, value in pairs(opts and opts.env or {}) do
    variables[name] = value
  end
  local names = {}
  for name in pairs(variables) do
    names[#names + 1] = name
  end
  table.sort(names)
  local parts = { "env", table.concat(unset, " ") }
  for _, name in ipairs(names) do
    parts[#parts + 1] = quote(name .. "=" .. variables[name])
  end
  return table.concat(parts, " ")
end

-- Run bgwf in the foreground with the project as its working folder and
-- return { code = exit code, stdout = text, stderr = text }.
function Project:run(args, opts)
  self.runs = self.runs + 1
  local prefix = ("%s/run%d"):format(self.scratch, self.runs)
  local command = ("cd %s && %s timeout -k 10 %d %s %s >%s 2>%s </dev/null"):format(
    quote(self.dir), self:env_prefix(opts), helper.COMMAND_TIMEOUT,
    quote(helper.bin), quote_all(args),
    quote(prefix .. ".out"), quote(prefix .. ".err"))
  local result = { code = shell(command) }
  result.stdout = helper.read_file(prefix .. ".out") or ""
  result.stderr = helper.read_file(prefix .. ".err") or ""
  result.command = "bgwf " .. table.concat(args, " ")
  return result
end

-- Start bgwf in the background and return a Process. The bgwf process gets
-- its own pid (signals go to it alone) in a new process group, which
-- cleanup() kills whole so no forked step outlives the test.
function Project:start(args, opts)
  local name = (opts and opts.name) or ("process" .. (#self.processes + 1))
  local folder = ("%s/%s"):format(self.scratch, name)
  shell("mkdir -p " .. quote(folder))
  -- The launcher records its own pid (the process group, because setsid
  -- made it a group leader), runs bgwf in a foreground subshell that first
  -- records its pid and then execs, and records the exit code. The caller's
  -- shell starts background jobs with SIGINT ignored, so env restores the
  -- default for bgwf.
  local function in_folder(file_name)
    return quote(folder .. "/" .. file_name)
  end
  local script = folder .. "/launch.sh"
  local file = assert(io.open(script, "wb"))
  file:write(table.concat({
    "echo $$ > " .. in_folder("group"),
    "cd " .. quote(self.dir),
    ("sh -c 'echo $$ > \"$0\"; exec \"$@\"' %s %s env --default-signal=INT %s %s"
      .. " >%s 2>%s </dev/null"):format(
      in_folder("pid"), self:env_prefix(opts), quote(helper.bin), quote_all(args),
      in_folder("stdout"), in_folder("stderr")),
    ("echo $? > %s && mv %s %s"):format(in_folder("rc.tmp"), in_folder("rc.tmp"), in_folder("rc")),
    "",
  }, "\n"))
  file:close()
  shell(("setsid sh %s >/dev/null 2>&1 </dev/null &"):format(quote(script)))

  local process = setmetatable({ name = name, folder = folder }, Process)
  process.pid = helper.wait_until(name .. " writes its pid", function()
    local text = helper.read_file(folder .. "/pid")
    return text and tonumber(text:match("%d+"))
  end, 20)
  process.group = tonumber((helper.read_file(folder .. "/group") or ""):match("%d+"))
  self.processes[#self.processes + 1] = process
  return process
end

-- Start `bgwf executor` in the background. `args` are extra options after
-- --apps; the default poll interval is short to keep the specs quick.
function Project:start_executor(apps, args, opts)
  local full = { "executor", "--apps", apps }
  local has_poll = false
  for _, arg in ipairs(args or {}) do
    full[#full + 1] = arg
    if arg == "--poll-ms" then
      has_poll = true
    end
  end
  if not has_poll then
    full[#full + 1] = "--poll-ms"
    full[#full + 1] = "50"
  end
  opts = opts or {}
  opts.name = opts.name or ("executor" .. (#self.processes + 1))
  return self:start(full, opts)
end

-- Return the decoded `bgwf status --json [id]`, or nil and an explanation.
function Project:status(execution_id, opts)
  local args = { "status", "--json" }
  if execution_id then
    args[#args + 1] = tostring(execution_id)
  end
  local result = self:run(args, opts)
  if result.code ~= 0 then
    return nil, ("exit %d: %s"):format(result.code, result.stderr)
  end
  local decoded, _, problem = json.decode(result.stdout)
  if type(decoded) ~= "table" then
    return nil, ("invalid JSON (%s): %s"):format(tostring(problem), result.stdout)
  end
  return decoded
end

-- Return text that explains the current state: the latest status and the
-- stderr of every background process.
function Project:describe(execution_id)
  local parts = {}
  local result = self:run({ "status", execution_id and tostring(execution_id) or nil })
  parts[#parts + 1] = "--- bgwf status:\n" .. result.stdout .. result.stderr
  for _, process in ipairs(self.processes) do
    parts[#parts + 1] = process:describe()
  end
  return table.concat(parts, "\n")
end

-- Poll `status --json` until predicate(status, steps_by_token) holds, and
-- return the status that satisfied it.
function Project:wait_for_status(description, predicate, opts)
  opts = opts or {}
  return helper.wait_until(description, function()
    local status = self:status(opts.execution)
    if status and predicate(status, helper.steps_by_token(status)) then
      return status
    end
    return nil
  end, opts.deadline, function() return self:describe(opts.execution) end)
end

-- Wait until the attempt is in one of the given statuses, e.g.
-- project:wait_for_attempt({ FINISHED = true }).
function Project:wait_for_attempt(statuses, opts)
  local names = {}
  for name in pairs(statuses) do
    names[#names + 1] = name
  end
  table.sort(names)
  return self:wait_for_status("the attempt is " .. table.concat(names, " or "),
    function(status)
      return status.attempt and statuses[status.attempt.status]
    end, opts)
end

-- Wait until the step with this token has the given status.
function Project:wait_for_step(token, step_status, opts)
  return self:wait_for_status(("step %s is %s"):format(token, step_status),
    function(_, steps)
      return steps[token] and steps[token].status == step_status
    end, opts)
end

-- Wait until a file under the project root exists.
function Project:wait_for_file(relative, deadline_seconds)
  return helper.wait_until(relative .. " exists",
    function() return self:exists(relative) end,
    deadline_seconds,
    function() return self:describe() end)
end

-- Count the rows of a table in the project database. A missing database
-- file or a missing table counts as zero rows.
function Project:count_rows(table_name, db)
  db = db or self.db
  if helper.is_postgresql(db) then
    if helper.psql(db, ("SELECT to_regclass('%s') IS NULL"):format(table_name)):match("^t") then
      return 0
    end
    local output = helper.psql(db, ("SELECT count(*) FROM %s"):format(table_name))
    local count = tonumber(output:match("^%s*(%d+)%s*$"))
    assert(count, ("psql could not count %s in %s: %s"):format(table_name, db, output))
    return count
  end
  if not helper.file_exists(db) then
    return 0
  end
  local query = ("SELECT CASE WHEN EXISTS (SELECT 1 FROM sqlite_master"
    .. " WHERE type = 'table' AND name = '%s') THEN (SELECT count(*) FROM %s)"
    .. " ELSE 0 END;"):format(table_name, table_name)
  local pipe = io.popen(("sqlite3 -readonly %s %s 2>&1"):format(quote(db), quote(query)))
  local output = pipe:read("a")
  pipe:close()
  local count = tonumber(output:match("^%s*(%d+)%s*$"))
  assert(count, ("sqlite3 could not count %s in %s: %s"):format(table_name, db, output))
  return count
end

-- Return the number that a query of one value returns from the project
-- database (or db): through psql for a PostgreSQL URL, else through sqlite3.
function Project:query_number(sql, db)
  db = db or self.db
  local output
  if helper.is_postgresql(db) then
    output = helper.psql(db, sql)
  else
    local pipe = io.popen(("sqlite3 -readonly %s %s 2>&1"):format(quote(db), quote(sql)))
    output = pipe:read("a")
    pipe:close()
  end
  local number = tonumber(output:match("^%s*(%-?[%d.]+)%s*$"))
  assert(number, ("could not read a number from %s in %s: %s"):format(sql, db, output))
  return number
end

-- Return true when the project database (or db) exists: the SQLite file,
-- or the bgwf tables in the PostgreSQL database.
function Project:database_exists(db)
  db = db or self.db
  if helper.is_postgresql(db) then
    return helper.psql(db, "SELECT to_regclass('bgwf_meta') IS NOT NULL"):match("^t") ~= nil
  end
  return helper.file_exists(db)
end

-- Return the number of rows in executions, attempts and steps together.
function Project:stored_rows(db)
  return self:count_rows("executions", db)
    + self:count_rows("attempts", db)
    + self:count_rows("steps", db)
end

-- Kill every background process of the project and remove its folder.
function Project:cleanup()
  for _, process in ipairs(self.processes) do
    process:kill_all()
  end
  if os.getenv("BGWF_SPEC_KEEP") then
    io.stderr:write("kept project folder " .. self.dir .. "\n")
    return
  end
  if helper.is_postgresql(self.db) then
    local name = self.db:match("^postgres[a-z]*://[^/?]*/([^?]*)")
    helper.psql(helper.postgresql_url, ('DROP DATABASE IF EXISTS "%s" WITH (FORCE)'):format(name))
  end
  shell("rm -rf " .. quote(self.dir))
end

------------------------------------------------------------------------------
-- Action sources shared by several specs

helper.actions = {}

-- Record the step token and the pid of the step's process in ctx.ledger.
helper.actions.record = [[
return {
  execute = function(step, ctx)
    local stat = io.open("/proc/self/stat"):read("l")
    local file = assert(io.open(ctx.ledger, "a"))
    file:write(step.token, " ", stat:match("^(%d+)"), "\n")
    file:close()
  end,
}
]]

-- Write ctx.started (containing the step's pid), then wait until
-- ctx.release exists, then write ctx.finished. It gives up with an error
-- after ctx.give_up_after seconds (default 120), so it never hangs forever.
helper.actions.wait_for_release = [[
local function exists(path)
  local file = io.open(path, "r")
  if file then file:close() return true end
  return false
end

return {
  execute = function(step, ctx)
    local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local started = assert(io.open(ctx.started, "w"))
    started:write(pid, "\n")
    started:close()
    local give_up_at = os.time() + (ctx.give_up_after or 120)
    while not exists(ctx.release) do
      if os.time() > give_up_at then
        error("the release file " .. ctx.release .. " never appeared")
      end
      os.execute("sleep 0.05")
    end
    if ctx.finished then
      local finished = assert(io.open(ctx.finished, "w"))
      finished:write(pid, "\n")
      finished:close()
    end
  end,
}
]]

-- Fail with the message in ctx.message.
helper.actions.fail = [[
return {
  execute = function(step, ctx)
    error(ctx.message or "failed on purpose")
  end,
}
]]

return helper
