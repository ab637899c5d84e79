-- mobileops logs: what containers wrote, kept by the log collector (plugins/logcollector):
-- every line with its stream and a nanosecond timestamp, in per-container journals with
-- retention, a full-text index, exports and analysis. docs/logs.md describes it all.
local mo = require("mobileops")
local logs = mo.plugins.logcollector

local wf = mo.workflow{
  name = "logs",
  summary = "Show, follow, search, export and analyze containers' output",
  description = "Output is captured from the moment a container starts (also `run` in the foreground) and kept until the container is deleted, within its retention (--log-max-size, --log-max-age; default 100Mi).",
}

local time_help = "RFC 3339 time, Unix seconds, or a duration before now (10m, 1h30m, 2d)"

local function stamp(t)
  -- "2026-11-23T05:12:33.727227470Z" -> "2026-11-23 05:12:33.727"
  if type(t) ~= "string" then return "" end
  return t:sub(1, 10) .. " " .. t:sub(12, 23)
end

wf:verb{
  name = "show",
  summary = "Print a container's output (stdout lines to stdout, stderr lines to stderr; one --stream: all to stdout)",
  options = {
    { name = "follow", short = "f", summary = "keep printing new lines until the container exits" },
    { name = "since", type = "string", metavar = "TIME", summary = "lines at or after TIME: " .. time_help },
    { name = "until", type = "string", metavar = "TIME", summary = "lines before TIME" },
    { name = "tail", short = "n", type = "int", metavar = "N", summary = "only the last N lines" },
    { name = "stream", type = "string", metavar = "STREAM", summary = "stdout or stderr only" },
    { name = "timestamps", short = "t", summary = "prefix each line with its time (RFC 3339, ns)" },
  },
  args = { { name = "NAME", summary = "container name or id" } },
  run = function(opts, args)
    logs.show{ container = args.NAME, follow = opts.follow, since = opts.since, ["until"] = opts["until"],
               tail = opts.tail, stream = opts.stream, timestamps = opts.timestamps, json = mo.json }
  end,
}

wf:verb{
  name = "search",
  summary = "Find lines containing PATTERN across containers (full-text index)",
  description = "PATTERN's words must appear together, in order, in one line (any case; the last word may be the start of a word). --raw takes an SQLite FTS5 query instead: `error AND NOT timeout`, `\"disk full\" OR enospc`, `conn*`.",
  options = {
    { name = "container", short = "c", type = "list", metavar = "NAME", summary = "search only this container (repeatable)" },
    { name = "since", type = "string", metavar = "TIME", summary = "lines at or after TIME: " .. time_help },
    { name = "until", type = "string", metavar = "TIME", summary = "lines before TIME" },
    { name = "stream", type = "string", metavar = "STREAM", summary = "stdout or stderr only" },
    { name = "limit", type = "int", metavar = "N", summary = "at most the newest N hits (default 100)" },
    { name = "raw", summary = "PATTERN is an FTS5 query expression" },
  },
  args = { { name = "PATTERN", summary = "text to find" } },
  run = function(opts, args)
    local containers = opts.container
    if containers and #containers == 0 then containers = nil end
    local r = logs.search{ pattern = args.PATTERN, container = containers, since = opts.since,
                           ["until"] = opts["until"], stream = opts.stream, limit = opts.limit, raw = opts.raw }
    if mo.json then return mo.output(r) end
    for _, h in ipairs(r.hits) do
      mo.printf("%s  %-16s %-6s %s", stamp(h.time), h.name, h.stream, h.line)
    end
    local more = r.more and " (more: narrow the search or raise --limit)" or ""
    mo.eprint(string.format("%d hit(s) in %d container(s), %.1f ms%s", #r.hits, r.containers, r.milliseconds, more))
    if #r.hits == 0 then return 1 end
  end,
}

wf:verb{
  name = "list",
  summary = "List the journals: size on disk, lines indexed, first and last line",
  run = function()
    mo.output(mo.array(logs.stats()), {
      { key = "name" },
      { key = "id", format = function(v) return v:sub(1, 12) end },
      { key = "bytes", title = "SIZE", format = function(v) return mo.bytes(v) end },
      { key = "segments" },
      { key = "lines_indexed", title = "LINES" },
      { key = "first", format = function(v) return stamp(v) end },
      { key = "last", format = function(v) return stamp(v) end },
      { key = "writer", title = "LIVE", format = function(v) return v and "yes" or "no" end },
    })
  end,
}

-- One event as a line of the monitor.
local function event_line(e)
  local p = e.payload or {}
  local detail = ""
  if p.exit_code ~= nil then detail = " exit_code=" .. tostring(p.exit_code) end
  if p.signal ~= nil then detail = detail .. " signal=" .. tostring(p.signal) end
  if p.args ~= nil then detail = detail .. " args=" .. mo.json_encode(p.args) end
  return string.format("%s  %-16s event  %s%s", stamp(e.time), p.name or e.source, e.type, detail)
end

wf:verb{
  name = "monitor",
  summary = "Live view of every container's output and lifecycle events",
  options = {
    { name = "follow", short = "f", summary = "keep watching (Ctrl-C ends it)" },
    { name = "tail", short = "n", type = "int", metavar = "N", summary = "recent lines per container to start with (default 10)" },
    { name = "interval", type = "number", metavar = "SECONDS", summary = "how often to look for more when following (default 0.2)" },
  },
  args = { { name = "NAME", summary = "only this container", optional = true } },
  run = function(opts, args)
    local containers
    local id
    if args.NAME then
      id = mo.runtime.state(args.NAME).id
      containers = { id }
    end
    local function ours(e)
      return id == nil or (e.payload and e.payload.id == id)
    end
    local tail = opts.tail or 10
    local r = logs.read{ containers = containers, tail = tail > 0 and tail or nil }
    local cursors = r.cursors
    -- The recent events: the last ones (a short history), then everything new.
    local last_seq = 0
    local history = mo.events{ limit = 100000, newest = true }
    local kept = {}
    for i = #history, 1, -1 do
      if #kept >= tail then break end
      if ours(history[i]) then table.insert(kept, 1, history[i]) end
    end
    local lines = {}
    for _, e in ipairs(kept) do lines[#lines + 1] = { time = e.time, event = e } end
    if #history > 0 then last_seq = history[#history].seq end
    for _, l in ipairs(r.lines) do lines[#lines + 1] = { time = l.time, line = l } end
    local function flush(batch)
      table.sort(batch, function(a, b) return a.time < b.time end)
      for _, x in ipairs(batch) do
        if mo.json then
          mo.print(mo.json_encode(x.event or x.line))
        elseif x.event then
          mo.print(event_line(x.event))
        else
          mo.printf("%s  %-16s %-6s %s", stamp(x.line.time), x.line.name, x.line.stream, x.line.line)
        end
      end
      io.stdout:flush()
    end
    flush(lines)
    if not opts.follow then return end
    local interval = opts.interval or 0.2
    while true do
      mo.sleep(interval)
      local batch = {}
      r = logs.read{ containers = containers, cursors = cursors }
      cursors = r.cursors
      for _, l in ipairs(r.lines) do batch[#batch + 1] = { time = l.time, line = l } end
      for _, e in ipairs(mo.events{ after = last_seq, limit = 100000 }) do
        last_seq = e.seq
        if ours(e) then batch[#batch + 1] = { time = e.time, event = e } end
      end
      flush(batch)
    end
  end,
}

wf:verb{
  name = "export",
  summary = "Write containers' output to a tar, tar.gz or JSON-lines file (with a manifest)",
  description = "A tar holds <name>-<id>/stdout.log and stderr.log per container (\"<time> F|P <line>\", the CRI log format) and manifest.json with each file's line count, size and sha256.",
  options = {
    { name = "output", short = "o", type = "string", metavar = "FILE", summary = "where to write (jsonl: default stdout)" },
    { name = "container", short = "c", type = "list", metavar = "NAME", summary = "export only this container (repeatable; default all)" },
    { name = "since", type = "string", metavar = "TIME", summary = "lines at or after TIME: " .. time_help },
    { name = "until", type = "string", metavar = "TIME", summary = "lines before TIME" },
    { name = "quiet", short = "q", summary = "no progress display" },
  },
  args = { { name = "FORMAT", summary = "tar, tar.gz or jsonl" } },
  run = function(opts, args)
    local containers = opts.container
    if containers and #containers == 0 then containers = nil end
    if args.FORMAT ~= "jsonl" and (opts.output == nil or opts.output == "-") and mo.isatty(1) then
      mo.error("refusing to write a `" .. args.FORMAT .. "` archive to a terminal: use -o FILE")
    end
    local r = logs.export{ format = args.FORMAT, output = opts.output, container = containers,
                           since = opts.since, ["until"] = opts["until"], quiet = opts.quiet }
    if mo.json then return mo.output(r) end
    if r.output and r.output ~= "" and r.output ~= "-" then
      mo.printf("%s: %d container(s), %d line(s), %s, sha256 %s", r.output, r.containers, r.lines,
                mo.bytes(r.bytes), r.sha256 or "-")
    end
  end,
}

local function print_errors(list)
  for _, c in ipairs(list) do
    mo.printf("%s: %d line(s), %d error-like, %d warning-like", c.name, c.lines or 0,
              c.error_lines or 0, c.warning_lines or 0)
    for _, p in ipairs(c.patterns or {}) do
      mo.printf("  %6d  %-7s %s", p.count, p.level, p.pattern)
      mo.printf("          first %s, last %s, e.g. %s", stamp(p.first), stamp(p.last), p.example)
    end
  end
end

local function print_performance(list)
  for _, c in ipairs(list) do
    local rate = c.rate or {}
    local s = c.streams or {}
    mo.printf("%s: %d line(s), %s over %.1f s (stdout %d, stderr %d)", c.name, c.lines or 0,
              mo.bytes(c.bytes), c.duration_s or 0, (s.stdout or {}).lines or 0, (s.stderr or {}).lines or 0)
    if (c.lines or 0) > 0 then
      mo.printf("  rate: %.1f lines/s on average, peak %d lines/s at %s", rate.avg or 0, rate.peak or 0,
                stamp(rate.peak_at))
      local ll = c.line_length or {}
      mo.printf("  line length: %.0f bytes on average, longest %d; %d partial line(s)", ll.avg or 0,
                ll.max or 0, c.partial or 0)
      for _, b in ipairs(c.busiest or {}) do mo.printf("  busiest minute %s: %d lines", stamp(b.minute), b.lines) end
    end
  end
end

local function print_resources(list)
  for _, c in ipairs(list) do
    if c.note then
      mo.printf("%s: %s", c.name, c.note)
    else
      local cpu, mem, pids = c.cpu or {}, c.memory or {}, c.pids or {}
      mo.printf("%s: %d sample(s) every %s s", c.name, c.samples or 0, tostring(c.interval_s))
      mo.printf("  cpu: %.1f%% on average, peak %.1f%%", cpu.avg_percent or 0, cpu.max_percent or 0)
      mo.printf("  memory: min %s, average %s, max %s, last %s", mo.bytes(mem.min), mo.bytes(mem.avg),
                mo.bytes(mem.max), mo.bytes(mem.last))
      mo.printf("  pids: max %s, last %s", tostring(pids.max or "-"), tostring(pids.last or "-"))
      for _, s in ipairs(c.series or {}) do
        mo.printf("    %s  cpu %5.1f%%  memory %-10s pids %s", stamp(s.time), s.cpu_percent or 0,
                  mo.bytes(s.memory), tostring(s.pids or "-"))
      end
    end
  end
end

wf:verb{
  name = "analyze",
  summary = "Summaries to act on: error patterns, line rates, CPU and memory over time",
  args = { { name = "KIND", summary = "errors, performance, resources or all (default all)", optional = true },
           { name = "NAME", summary = "only this container", optional = true } },
  run = function(_, args)
    local kind, name = args.KIND, args.NAME
    local kinds = { all = true, errors = true, performance = true, resources = true }
    if kind and not kinds[kind] and name == nil then
      -- `logs analyze NAME`: a container, every analysis.
      kind, name = nil, kind
    end
    local r = logs.analyze{ kind = kind, container = name }
    if mo.json then return mo.output(r) end
    local sections = { { "errors", print_errors }, { "performance", print_performance },
                       { "resources", print_resources } }
    local first = true
    for _, s in ipairs(sections) do
      if r[s[1]] then
        if not first then mo.print("") end
        first = false
        mo.printf("== %s ==", s[1])
        s[2](r[s[1]])
      end
    end
  end,
}

return wf
