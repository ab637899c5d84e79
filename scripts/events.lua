-- mobileops events: the lifecycle event log from the state store (create, start, exit
-- with its code, OOM, stop, remove, pause, resume, update, exec), oldest first.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "events",
  summary = "Show the lifecycle event log (create, start, exit, OOM, stop, delete, exec)",
  default = "list",
}

local function seconds(text, what)
  if text == nil or text == "" then return nil end
  return mo.plugins.logcollector.time{ text = text, what = what }.seconds
end

local function details(p)
  local parts = {}
  for _, k in ipairs({ "exit_code", "signal", "oom_killed" }) do
    if p[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(p[k]) end
  end
  if p.args ~= nil then parts[#parts + 1] = "args=" .. mo.json_encode(p.args) end
  return table.concat(parts, " ")
end

wf:verb{
  name = "list",
  summary = "Print events (the default verb: `mobileops events --follow`)",
  options = {
    { name = "since", type = "string", metavar = "TIME", summary = "events at or after TIME: RFC 3339, Unix seconds or a duration before now (10m, 2h)" },
    { name = "until", type = "string", metavar = "TIME", summary = "events before TIME" },
    { name = "follow", short = "f", summary = "keep printing new events (Ctrl-C ends it)" },
    { name = "type", type = "string", metavar = "TYPE", summary = "only this type (container.exit), or a prefix ending in a dot (container.)" },
    { name = "container", short = "c", type = "string", metavar = "NAME", summary = "only events of this container (name or id)" },
    { name = "limit", type = "int", metavar = "N", summary = "at most N events before following (the newest; default all)" },
  },
  run = function(opts)
    if opts.type == "" then opts.type = nil end
    local query = { since = seconds(opts.since, "--since"), ["until"] = seconds(opts["until"], "--until"),
                    type = opts.type, limit = 100000, newest = true }
    local who = opts.container
    local function ours(e)
      local t = opts.type
      if t and t ~= "" then
        if t:sub(-1) == "." then
          if e.type:sub(1, #t) ~= t then return false end
        elseif e.type ~= t then
          return false
        end
      end
      if who == nil then return true end
      local p = e.payload or {}
      return p.name == who or (type(p.id) == "string" and p.id:sub(1, #who) == who)
    end
    local function line(e)
      local p = e.payload or {}
      local name = p.name or ""
      return string.format("%s  %-22s %-16s %s", e.time, e.type, name, details(p))
    end
    local list = {}
    for _, e in ipairs(mo.events(query)) do
      if ours(e) then list[#list + 1] = e end
    end
    if opts.limit and opts.limit >= 0 and #list > opts.limit then
      local newest = {}
      for i = #list - opts.limit + 1, #list do newest[#newest + 1] = list[i] end
      list = newest
    end
    -- Following goes on from the newest event of all, whatever the filters kept.
    local last = 0
    local newest = mo.events{ limit = 1, newest = true }
    if #newest > 0 then last = newest[1].seq end
    if mo.json and not opts.follow then return mo.output(mo.array(list)) end
    for _, e in ipairs(list) do mo.print(mo.json and mo.json_encode(e) or line(e)) end
    if not opts.follow then return end
    io.stdout:flush()
    while true do
      mo.sleep(0.2)
      for _, e in ipairs(mo.events{ after = last, limit = 100000 }) do
        last = e.seq
        if ours(e) then mo.print(mo.json and mo.json_encode(e) or line(e)) end
      end
      io.stdout:flush()
    end
  end,
}

return wf
