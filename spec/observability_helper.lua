-- Test support for the specs of resources, step logs and events: running
-- commands that print JSON, finding a step's log file, reading its lines
-- without the time prefix, file modes and the peak memory of a process.

local json = require("dkjson")
local helper = require("helper")

local observability = {}

-- The prefix of every line in a step log: "YYYY-MM-DD HH:MM:SS.mmm ".
observability.TIME_PREFIX = "^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%.%d%d%d "

-- Run a bgwf command, fail the test unless it exits 0, and return the result.
function observability.run_ok(project, args, opts)
  local result = project:run(args, opts)
  assert(result.code == 0, ("%s exited %d:\n%s%s"):format(
    result.command, result.code, result.stdout, result.stderr))
  return result
end

-- Run a bgwf command that prints JSON and return the decoded value. A JSON
-- null becomes json.null, so a key with a null value stays present.
function observability.run_json(project, args, opts)
  local result = observability.run_ok(project, args, opts)
  local decoded, _, problem = json.decode(result.stdout, 1, json.null)
  assert(type(decoded) == "table", ("%s printed invalid JSON (%s): %s"):format(
    result.command, tostring(problem), result.stdout))
  return decoded
end

-- Decode a JSON text and fail the test with the text when it is invalid.
function observability.decode(text, what)
  local decoded, _, problem = json.decode(text or "", 1, json.null)
  assert(type(decoded) == "table", ("%s is not a JSON object (%s): %s"):format(
    what or "the text", tostring(problem), tostring(text)))
  return decoded
end

-- Return the execution id and the attempt id of the newest execution.
function observability.ids(project)
  local status = assert(project:status())
  return status.execution.id, status.attempt.id
end

-- Return the path of a step's log file under the default log folder,
-- bgwf-logs beside the database.
function observability.log_path(project, app, execution, attempt, token)
  return project:path(("bgwf-logs/%s/%d/%d/%s.log"):format(app, execution, attempt, token))
end

-- Split the lines of a step log into their messages, with the time prefix
-- removed. Return the messages and the lines that lack the prefix.
function observability.messages(text)
  local messages, unprefixed = {}, {}
  for line in (text or ""):gmatch("[^\n]+") do
    local rest = line:match(observability.TIME_PREFIX .. "(.*)$")
    if rest then
      messages[#messages + 1] = rest
    else
      unprefixed[#unprefixed + 1] = line
    end
  end
  return messages, unprefixed
end

-- Return the index of the first message equal to `wanted`, or nil.
function observability.index_of(list, wanted)
  for i, item in ipairs(list) do
    if item == wanted then
      return i
    end
  end
  return nil
end

-- Return the permission bits of a file as octal text, such as "600".
function observability.mode(path)
  local pipe = io.popen("stat -c %a " .. helper.quote(path) .. " 2>&1")
  local output = pipe:read("a")
  pipe:close()
  return (output:gsub("%s+$", ""))
end

-- Return the peak resident set size (VmHWM) of a running process in KiB,
-- or nil when the process is gone.
function observability.peak_rss_kib(pid)
  local text = helper.read_file("/proc/" .. tostring(pid) .. "/status")
  return text and tonumber(text:match("VmHWM:%s*(%d+)%s*kB"))
end

-- Return the size of a file in bytes, or nil when it is missing.
function observability.size(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local size = file:seek("end")
  file:close()
  return size
end

-- Count the lines of a file that contain `text` (a plain string).
function observability.count_lines_with(path, text)
  local count = 0
  for _, line in ipairs(helper.read_lines(path)) do
    if line:find(text, 1, true) then
      count = count + 1
    end
  end
  return count
end

return observability
