--- The workflow builder: runs a workflow file's function and flattens the
--- DAG it declares (multi-steps included) into a list of steps for the store.
local json = require("bgwf.json")

local M = {}

local DEFAULT_COOLDOWN = 300
local STEP_OPTIONS = {
  after = true, cooldown = true, retries = true, retry_backoff = true, timeout = true,
  max_memory = true,
}

--- Default retry backoff: 10 s, doubling, at most 10 minutes.
local DEFAULT_BACKOFF = { initial = 10, factor = 2, max = 600 }

local Handle = {}
Handle.__index = Handle
Handle.__name = "bgwf.step_handle"

function Handle:__tostring()
  return (self.kind == "multi" and "multistep " or "step ") .. self.token
end

local Builder = {}
Builder.__index = Builder
Builder.__name = "bgwf.workflow_builder"

--- short_src of each function that declared steps, looked up once.
local sources = setmetatable({}, { __mode = "k" })

local function where(level)
  local info = debug.getinfo(level + 1, "lf")
  if info and info.currentline and info.currentline > 0 then
    local source = sources[info.func]
    if not source then
      source = debug.getinfo(info.func, "S").short_src
      sources[info.func] = source
    end
    return source .. ":" .. info.currentline
  end
  return "?"
end

--- Returns true when name is [A-Za-z0-9_] segments joined by '.'.
local function is_valid_name(name)
  if type(name) ~= "string" or name == "" then
    return false
  end
  if name:find("^[%w_]+$") then
    return true
  end
  for segment in (name .. "."):gmatch("(.-)%.") do
    if not segment:match("^[%w_]+$") then
      return false
    end
  end
  return true
end

local function check_self(self, method)
  if getmetatable(self) ~= Builder then
    error("wf:" .. method .. " must be called with ':' (wf:" .. method .. "(...))", 3)
  end
end

--- Returns name quoted for a message; control bytes (a NUL would cut the
--- message short) and bytes above 127 are escaped.
local function quote(name)
  if name:find("[%c\128-\255]") then
    return (string.format("%q", name):gsub("\\\n", "\\n"))
  end
  return "'" .. name .. "'"
end

local function check_token(token, what)
  if type(token) ~= "string" or not token:match("^[%w_]+$") then
    error(string.format("invalid %s token %s: use letters, digits and '_'", what,
      type(token) == "string" and quote(token) or ("of type " .. type(token))), 3)
  end
end

local function check_seconds(token, name, value, allow_zero)
  if type(value) ~= "number" or value ~= value or value == math.huge or value < 0
      or (value == 0 and not allow_zero) then
    error(string.format("%s of step '%s' must be a number of seconds %s, not %s", name, token,
      allow_zero and ">= 0" or "> 0", tostring(value)), 5)
  end
  return math.floor(value * 1000 + 0.5)
end

--- Checks the retry, timeout and memory options and returns them in the
--- units the store keeps (ms and bytes; 0 means none).
--- The policy of a step that sets none of its options, shared (never changed).
local DEFAULT_POLICY = {
  retries = 0,
  backoff_initial_ms = DEFAULT_BACKOFF.initial * 1000,
  backoff_factor = DEFAULT_BACKOFF.factor,
  backoff_max_ms = DEFAULT_BACKOFF.max * 1000,
  timeout_ms = 0,
  max_memory = 0,
}

local function check_policy(token, options)
  if options.retries == nil and options.retry_backoff == nil and options.timeout == nil
      and options.max_memory == nil then
    return DEFAULT_POLICY
  end
  local retries = options.retries or 0
  if math.type(retries) ~= "integer" or retries < 0 then
    error(string.format("retries of step '%s' must be a whole number >= 0, not %s", token,
      tostring(options.retries)), 4)
  end
  local backoff = options.retry_backoff
  if type(backoff) == "number" then
    backoff = { initial = backoff }
  elseif backoff == nil then
    backoff = {}
  elseif type(backoff) ~= "table" then
    error(string.format("retry_backoff of step '%s' must be seconds or a table " ..
      "{ initial = s, factor = f, max = s }, not %s", token, type(backoff)), 4)
  end
  for key in pairs(backoff) do
    if DEFAULT_BACKOFF[key] == nil then
      error(string.format("unknown retry_backoff field '%s' for step '%s' (known: initial, " ..
        "factor, max)", tostring(key), token), 4)
    end
  end
  local factor = backoff.factor or DEFAULT_BACKOFF.factor
  if type(factor) ~= "number" or factor < 1 or factor ~= factor or factor == math.huge then
    error(string.format("retry_backoff.factor of step '%s' must be a number >= 1, not %s",
      token, tostring(factor)), 4)
  end
  local max_memory = options.max_memory or 0
  if math.type(max_memory) ~= "integer" or max_memory < 0 then
    error(string.format("max_memory of step '%s' must be a whole number of bytes >= 0, " ..
      "not %s", token, tostring(options.max_memory)), 4)
  end
  return {
    retries = retries,
    backoff_initial_ms = check_seconds(token, "retry_backoff.initial",
      backoff.initial or DEFAULT_BACKOFF.initial, true),
    backoff_factor = factor,
    backoff_max_ms = check_seconds(token, "retry_backoff.max",
      backoff.max or DEFAULT_BACKOFF.max, true),
    timeout_ms = options.timeout and check_seconds(token, "timeout", options.timeout, false) or 0,
    max_memory = max_memory,
  }
end

local function check_options(token, options)
  if options == nil then
    options = {}
  elseif type(options) ~= "table" then
    error("options of step '" .. token .. "' must be a table, not " .. type(options), 3)
  end
  for key in pairs(options) do
    if not STEP_OPTIONS[key] then
      local known = {}
      for name in pairs(STEP_OPTIONS) do known[#known + 1] = name end
      table.sort(known)
      error(string.format("unknown option '%s' for step '%s' (known options: %s)",
        tostring(key), token, table.concat(known, ", ")), 3)
    end
  end
  local after = options.after
  if after ~= nil then
    if type(after) ~= "table" or getmetatable(after) == Handle then
      after = { after }
    end
    for i, entry in ipairs(after) do
      if getmetatable(entry) ~= Handle and type(entry) ~= "string" then
        error(string.format("after[%d] of step '%s' must be a step handle or a token, not %s",
          i, token, type(entry)), 3)
      end
    end
  end
  local cooldown = options.cooldown
  if cooldown == nil then
    cooldown = DEFAULT_COOLDOWN
  elseif type(cooldown) ~= "number" or cooldown < 0 or cooldown ~= cooldown or cooldown == math.huge then
    error(string.format("cooldown of step '%s' must be a number of seconds >= 0, not %s",
      token, tostring(cooldown)), 3)
  end
  return {
    after = after or {},
    cooldown_ms = math.floor(cooldown * 1000 + 0.5),
    policy = check_policy(token, options),
  }
end

local function new_node(self, kind, token, options)
  local full = self.prefix .. token
  local state = self.state
  local previous = state.by_token[full]
  if previous then
    error(string.format("duplicate step token '%s': first declared at %s", full, previous.where), 3)
  end
  local node = setmetatable({
    kind = kind, token = full, scope = self, after = options.after,
    cooldown_ms = options.cooldown_ms, policy = options.policy, where = where(3),
  }, Handle)
  state.by_token[full] = node
  self.children[#self.children + 1] = node
  return node
end

--- wf:step(token, action, context, options) declares a step and returns its handle.
function Builder:step(token, action, context, options)
  check_self(self, "step")
  check_token(token, "step")
  if not is_valid_name(action) then
    error(string.format("invalid action name %s for step '%s': use letters, digits and '_', " ..
      "in segments joined by '.'", type(action) == "string" and quote(action) or
      ("of type " .. type(action)), self.prefix .. token), 2)
  end
  local checked = check_options(self.prefix .. token, options)
  local encoded, message = json.encode(context)
  if not encoded then
    error(string.format("context of step '%s' is not JSON-serializable %s",
      self.prefix .. token, message), 2)
  end
  local node = new_node(self, "step", token, checked)
  node.action = action
  node.context = encoded
  local state = self.state
  state.steps[#state.steps + 1] = node
  return node
end

--- wf:multistep(token, [context,] build, options) declares a multi-step:
--- build(sub, context) declares a sub-DAG whose tokens are prefixed with
--- "token__" and returns its tails (nil: every step nothing else waits for).
function Builder:multistep(token, context, build, options)
  check_self(self, "multistep")
  if type(context) == "function" then
    context, build, options = nil, context, build
  end
  check_token(token, "multistep")
  if type(build) ~= "function" then
    error("multistep '" .. self.prefix .. token .. "' needs a function that builds its steps", 2)
  end
  local checked = check_options(self.prefix .. token, options)
  local node = new_node(self, "multi", token, checked)
  local sub = setmetatable({
    prefix = node.token .. "__", state = self.state, children = {}, owner = node,
    app = self.app, scope_name = self.scope_name,
  }, Builder)
  node.sub = sub
  local tails = build(sub, context)
  if #sub.children == 0 then
    error("multistep '" .. node.token .. "' declares no steps", 2)
  end
  node.declared_tails = tails
  return node
end

--- wf:resource(name) declares a resource of the execution and returns a
--- handle to pass in step contexts; actions read and write it with
--- step:get(handle) and step:set(handle, value).
function Builder:resource(name)
  check_self(self, "resource")
  if type(name) ~= "string" or name == "" or #name > 256 or name:find("\0", 1, true) then
    error("invalid resource name " .. (type(name) == "string" and ("'" .. name .. "'")
      or ("of type " .. type(name))) .. ": use 1 to 256 bytes", 2)
  end
  return { ["$resource"] = name }
end

local function fail(message)
  error(message, 0)
end

local resolve_node

local function lookup(scope, entry, from)
  if getmetatable(entry) == Handle then
    return entry
  end
  local node = scope.state.by_token[scope.prefix .. entry] or scope.state.by_token[entry]
  if not node then
    fail(string.format("step '%s' (%s) waits for '%s', which is not declared", from.token,
      from.where, entry))
  end
  return node
end

--- Returns the steps that a dependency on node means: the node itself, or
--- for a multi-step, the steps of its tails.
local function expand(node, into, state)
  if node.kind == "step" then
    into[#into + 1] = node
    return
  end
  if not node.tails then
    local tails = node.declared_tails
    if tails == nil then
      local waited = {}
      for _, child in ipairs(node.sub.children) do
        for _, entry in ipairs(child.after) do
          waited[lookup(node.sub, entry, child)] = true
        end
      end
      tails = {}
      for _, child in ipairs(node.sub.children) do
        if not waited[child] then tails[#tails + 1] = child end
      end
    elseif getmetatable(tails) == Handle then
      tails = { tails }
    end
    node.tails = {}
    for i, tail in ipairs(tails) do
      if getmetatable(tail) ~= Handle then
        fail(string.format("multistep '%s' returned %s as tail %d; return step handles",
          node.token, type(tail), i))
      end
      node.tails[#node.tails + 1] = tail
    end
  end
  if state.expanding[node] then
    fail("multistep '" .. node.token .. "' waits for itself")
  end
  state.expanding[node] = true
  for _, tail in ipairs(node.tails) do
    expand(tail, into, state)
  end
  state.expanding[node] = nil
end

--- Returns the list of step nodes that node waits for. A node none of whose
--- dependencies lies in its own multi-step is a head of it and also waits
--- for what the multi-step waits for.
resolve_node = function(node, state)
  if node.resolved then
    return node.resolved
  end
  if state.resolving[node] then
    return {}
  end
  state.resolving[node] = true
  local scope = node.scope
  local deps, inside = {}, false
  for _, entry in ipairs(node.after) do
    local target = lookup(scope, entry, node)
    if target.scope == scope then inside = true end
    expand(target, deps, state)
  end
  if not inside and scope.owner then
    for _, dep in ipairs(resolve_node(scope.owner, state)) do
      deps[#deps + 1] = dep
    end
  end
  state.resolving[node] = nil
  node.resolved = deps
  return deps
end

local function find_cycle(steps)
  local color, stack = {}, {}
  local function visit(node)
    color[node] = "open"
    stack[#stack + 1] = node
    for _, dep in ipairs(node.resolved) do
      if color[dep] == "open" then
        local names, start = {}, nil
        for i, n in ipairs(stack) do
          if n == dep then start = i end
          if start then names[#names + 1] = n.token end
        end
        names[#names + 1] = dep.token
        return names
      elseif not color[dep] then
        local cycle = visit(dep)
        if cycle then return cycle end
      end
    end
    stack[#stack] = nil
    color[node] = "done"
  end
  for _, node in ipairs(steps) do
    if not color[node] then
      local cycle = visit(node)
      if cycle then return cycle end
    end
  end
end

--- Builds the workflow of app with workflow_fn (the function a workflow
--- file returns) and the submit context ctx. Returns a list of
--- { token, action, context (JSON), cooldown_ms, policy, deps (indexes) } and
--- the list of tokens declared but not reachable from the returned tails;
--- raises an error that names the problem otherwise.
function M.build(app, scope_name, workflow_fn, ctx)
  local state = { steps = {}, by_token = {}, resolving = {}, expanding = {} }
  local root = setmetatable({
    prefix = "", state = state, children = {}, app = app, scope_name = scope_name,
  }, Builder)
  local tails = workflow_fn(root, ctx)

  if #state.steps == 0 then
    fail("no steps declared: call wf:step at least once")
  end
  for _, node in ipairs(state.steps) do
    resolve_node(node, state)
  end
  local cycle = find_cycle(state.steps)
  if cycle then
    fail("dependency cycle: " .. table.concat(cycle, " -> "))
  end

  local reachable = {}
  if tails == nil then
    for _, node in ipairs(state.steps) do reachable[node] = true end
  else
    if getmetatable(tails) == Handle or type(tails) ~= "table" then
      tails = { tails }
    end
    local pending = {}
    for i, tail in ipairs(tails) do
      if getmetatable(tail) ~= Handle then
        fail(string.format("workflow '%s' returned %s as tail %d; return step handles",
          app, type(tail), i))
      end
      expand(tail, pending, state)
    end
    while #pending > 0 do
      local node = table.remove(pending)
      if not reachable[node] then
        reachable[node] = true
        for _, dep in ipairs(node.resolved) do pending[#pending + 1] = dep end
      end
    end
  end

  local index, result, dropped = {}, {}, {}
  for _, node in ipairs(state.steps) do
    if reachable[node] then
      result[#result + 1] = node
      index[node] = #result
    else
      dropped[#dropped + 1] = node.token
    end
  end
  for i, node in ipairs(result) do
    local deps, seen = {}, {}
    for _, dep in ipairs(node.resolved) do
      if not seen[dep] then
        seen[dep] = true
        deps[#deps + 1] = index[dep]
      end
    end
    result[i] = {
      token = node.token, action = node.action, context = node.context,
      cooldown_ms = node.cooldown_ms, policy = node.policy, deps = deps,
    }
  end
  return result, dropped
end

return M
