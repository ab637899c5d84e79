-- mobileops system: the host and the health of every plugin.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "system",
  summary = "Host information, plugin health and clean-up",
}

wf:verb{
  name = "info",
  summary = "Show facts about this host and where mobileops keeps its state",
  run = function()
    local info = mo.system_info()
    if mo.json then return mo.output(info) end
    mo.printf("mobileops:   %s (plugin ABI %s)", info.version, info.abi)
    mo.printf("kernel:      %s %s", info.kernel, info.arch)
    local cg = info.cgroup
    local v1 = {}
    for controller in pairs(cg.v1) do v1[#v1 + 1] = controller end
    table.sort(v1)
    mo.printf("cgroups:     %s%s%s", cg.layout,
      #v1 > 0 and ("; v1: " .. table.concat(v1, ",")) or "",
      cg.v2_mount and ("; v2 at " .. cg.v2_mount .. " (" .. table.concat(cg.v2_controllers or {}, ",") .. ")") or "")
    local ns = {}
    for name, ok in pairs(info.namespaces) do if ok then ns[#ns + 1] = name end end
    table.sort(ns)
    mo.printf("namespaces:  %s", table.concat(ns, ","))
    mo.printf("kvm:         %s", info.kvm and "/dev/kvm present" or "absent")
    mo.printf("root dir:    %s", info.root_dir)
    mo.printf("run dir:     %s", info.run_dir)
    mo.printf("config:      %s", info.config_file)
    mo.printf("plugins:     %s", table.concat(info.plugin_dirs, ":"))
    mo.printf("scripts:     %s", table.concat(info.script_dirs, ":"))
  end,
}

wf:verb{
  name = "doctor",
  summary = "Load every plugin and report whether it is usable here, and if not, why",
  run = function()
    local report = mo.doctor()
    local bad = 0
    for _, p in ipairs(report) do if not p.usable then bad = bad + 1 end end
    if mo.json then
      mo.output(report)
    else
      for _, p in ipairs(report) do
        mo.printf("%-4s %-14s %s", p.usable and "ok" or "FAIL", p.name,
                  p.reason ~= "" and p.reason or (p.state == "loaded" and "usable" or p.state))
      end
      if #report == 0 then mo.print("no plugins found on " .. table.concat(mo.system_info().plugin_dirs, ":")) end
    end
    if bad > 0 then return 1 end
  end,
}

wf:verb{
  name = "gc",
  summary = "Release what interrupted commands left behind (mounts, run files, state)",
  run = function()
    local released = {}
    for _, p in ipairs(mo.providers("runtime")) do
      local report = mo.service("runtime", p.provider).gc()
      for _, item in ipairs(report and report.released or {}) do released[#released + 1] = item end
    end
    -- then the storage service: roots and scratch volumes of containers now gone
    if #mo.providers("storage") > 0 then
      local report = mo.plugins.storage.gc()
      for _, item in ipairs(report and report.released or {}) do released[#released + 1] = item end
    end
    -- the network service: attachments, leases, veths and port rules of containers gone
    if #mo.providers("network") > 0 then
      local report = mo.plugins.bridge.gc()
      for _, item in ipairs(report and report.released or {}) do released[#released + 1] = item end
    end
    -- and the log collector: journals of containers now gone
    if #mo.providers("log") > 0 then
      local report = mo.plugins.logcollector.gc()
      for _, item in ipairs(report and report.released or {}) do released[#released + 1] = item end
    end
    -- the integrity service: manifests of layers, images and assets now gone
    if #mo.providers("integrity") > 0 then
      local report = mo.plugins.integrity.gc()
      for _, target in ipairs(report and report.removed or {}) do
        released[#released + 1] = { what = "manifest of what is gone", name = target }
      end
    end
    -- the event log: older than [events] max_age days (default 30), beyond max_rows (100000)
    local days = tonumber(mo.config("events.max_age_days") or "") or 30
    local rows = tonumber(mo.config("events.max_rows") or "") or 100000
    local pruned = mo.events_prune{ max_age = math.floor(days * 86400), max_rows = math.floor(rows) }
    if pruned > 0 then released[#released + 1] = { what = string.format("%d old event(s)", pruned), name = "event log" } end
    if mo.json then return mo.output({ released = mo.array(released) }) end
    for _, item in ipairs(released) do
      if type(item) == "table" then
        local who = item.name or item.container or item.volume or item.link or item.path or ""
        if type(who) == "string" and #who == 64 then who = who:sub(1, 12) end
        mo.printf("released %s: %s", tostring(who), tostring(item.what or mo.json_encode(item)))
      else
        mo.print("released " .. tostring(item))
      end
    end
    if #released == 0 then mo.print("nothing to release") end
  end,
}

return wf
