-- mobileops plugin: what plugins are installed and what they offer.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "plugin",
  summary = "List and describe plugins",
  default = "list",
}

wf:verb{
  name = "list",
  summary = "List the plugins on the plugin path (without loading them)",
  run = function()
    local plugins = mo.plugin_list()
    mo.output(plugins, {
      { key = "name" }, { key = "version" }, { key = "state" },
      { key = "provides" }, { key = "path" },
      { key = "error", title = "PROBLEM" },
    })
    for _, p in ipairs(plugins) do
      if p.state == "failed" and not mo.json then
        mo.warn(string.format("plugin `%s` (`%s`): %s", p.name, p.path, p.error))
      end
    end
  end,
}

wf:verb{
  name = "info",
  summary = "Load a plugin and show its services, methods, features and probe",
  args = { { name = "NAME", summary = "plugin name" } },
  run = function(_, args)
    local p = mo.plugin_info(args.NAME)
    if mo.json then return mo.output(p) end
    mo.printf("name:        %s", p.name)
    mo.printf("version:     %s", p.version)
    mo.printf("description: %s", p.description)
    mo.printf("path:        %s", p.path)
    mo.printf("abi:         %s", p.abi)
    mo.printf("state:       %s", p.state)
    if p.error then mo.printf("error:       %s", p.error) end
    mo.printf("provides:    %s", table.concat(p.provides, ", "))
    if p.probe then
      mo.printf("usable:      %s%s", p.probe.usable and "yes" or "no",
                p.probe.reason ~= "" and (" (" .. p.probe.reason .. ")") or "")
    end
    if p.features and #p.features > 0 then
      mo.printf("features:    %s", table.concat(p.features, ", "))
    end
    if p.methods and #p.methods > 0 then
      mo.print("methods:")
      for _, m in ipairs(p.methods) do mo.printf("  %-20s %s", m.name, m.summary) end
    end
    if p.state == "failed" then return 1 end
  end,
}

return wf
