-- mobileops features: the named extensions of the core, its Lua API and the plugins.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "features",
  summary = "List named features (core, Lua API, plugins)",
  default = "list",
}

wf:verb{
  name = "list",
  summary = "List every feature; plugins are loaded to ask them",
  run = function()
    local f = mo.features()
    if mo.json then return mo.output(f) end
    for _, name in ipairs(f.core) do mo.printf("core      %s", name) end
    local names = {}
    for plugin in pairs(f.plugins) do names[#names + 1] = plugin end
    table.sort(names)
    for _, plugin in ipairs(names) do
      for _, name in ipairs(f.plugins[plugin]) do mo.printf("plugin    %s (%s)", name, plugin) end
    end
    for _, fn in ipairs(f.api) do mo.printf("api       %s (since %s)", fn.name, fn.since) end
  end,
}

return wf
