// Parts of the `mobileops` module written in Lua. Described in LuaApi.cpp like every
// other function, so docs/lua-api.md covers them too.
namespace mobileops::core {

extern const char *const kLuaPrelude = R"LUA(
local mo = ...

local function check(fname, pname, value, expected, level)
  if type(value) ~= expected then
    error(string.format("%s: invalid '%s': expected %s, got %s", fname, pname, expected,
                        type(value)), (level or 2) + 1)
  end
end

local array_mt = mo._array_mt
mo._array_mt = nil
function mo.array(t)
  return setmetatable(t or {}, array_mt)
end

local Workflow = {}
Workflow.__index = Workflow

function mo.workflow(def)
  check("mo.workflow", "def", def, "table")
  check("mo.workflow", "def.name", def.name, "string")
  if not def.name:match("^[a-z][a-z0-9_-]*$") then
    error("mo.workflow: invalid 'def.name': expected [a-z][a-z0-9_-]*", 2)
  end
  return setmetatable({ name = def.name, summary = def.summary or "",
    description = def.description, default = def.default, verbs = {}, order = {} }, Workflow)
end

local option_types = { flag = true, string = true, int = true, number = true, list = true }

function Workflow:verb(def)
  local f = "workflow " .. self.name .. ": verb"
  check(f, "def", def, "table")
  check(f, "def.name", def.name, "string")
  check(f, "def.run", def.run, "function")
  def.summary = def.summary or ""
  def.options = def.options or {}
  def.args = def.args or {}
  for i, o in ipairs(def.options) do
    if type(o) ~= "table" or type(o.name) ~= "string" then
      error(string.format("%s %s: invalid 'options[%d]': expected a table with a name", f, def.name, i), 2)
    end
    o.type = o.type or "flag"
    if not option_types[o.type] then
      error(string.format("%s %s: option '%s' has unknown type '%s'", f, def.name, o.name, o.type), 2)
    end
  end
  for i, a in ipairs(def.args) do
    if type(a) ~= "table" or type(a.name) ~= "string" then
      error(string.format("%s %s: invalid 'args[%d]': expected a table with a name", f, def.name, i), 2)
    end
  end
  if self.verbs[def.name] then
    error(string.format("%s %s is declared twice", f, def.name), 2)
  end
  self.verbs[def.name] = def
  self.order[#self.order + 1] = def.name
  return def
end

function mo.printf(fmt, ...)
  mo.print(string.format(fmt, ...))
end

function mo.each(first, more, fn)
  local names = { first }
  for _, n in ipairs(more or {}) do names[#names + 1] = n end
  local failed = 0
  for _, n in ipairs(names) do
    local ok, err = pcall(fn, n)
    if not ok then
      if #names == 1 then error(err, 0) end
      mo.eprint("mobileops: " .. tostring(err))
      failed = failed + 1
    end
  end
  if failed > 0 then return 1 end
end

function mo.bytes(n, none)
  if type(n) ~= "number" then return none or "-" end
  local units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and string.format("%d%s", n, units[i]) or string.format("%.1f%s", n, units[i])
end

local function cell(v)
  if v == nil or v == mo.null then return "" end
  if type(v) == "table" then
    local parts = {}
    for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

function mo.table(rows, columns)
  check("mo.table", "rows", rows, "table")
  check("mo.table", "columns", columns, "table")
  local widths, lines = {}, {}
  local header = {}
  for i, c in ipairs(columns) do
    header[i] = c.title or string.upper(c.key)
    widths[i] = #header[i]
  end
  local cells = {}
  for r, row in ipairs(rows) do
    cells[r] = {}
    for i, c in ipairs(columns) do
      local v = c.format and c.format(row[c.key], row) or cell(row[c.key])
      cells[r][i] = v
      if #v > widths[i] then widths[i] = #v end
    end
  end
  local function line(values)
    local out = {}
    for i, v in ipairs(values) do
      out[i] = i < #values and v .. string.rep(" ", widths[i] - #v) or v
    end
    return table.concat(out, "  ")
  end
  lines[1] = line(header)
  for r = 1, #cells do lines[#lines + 1] = line(cells[r]) end
  mo.print(table.concat(lines, "\n"))
end

function mo.output(value, columns)
  if mo.json then
    mo.print(mo.json_encode(value, true))
  elseif columns and type(value) == "table" and (#value > 0 or next(value) == nil) then
    mo.table(value, columns)
  elseif type(value) == "table" then
    mo.print(mo.json_encode(value, true))
  elseif value ~= nil then
    mo.print(tostring(value))
  end
end

return mo
)LUA";

} // namespace mobileops::core
