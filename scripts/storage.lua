-- mobileops storage: the storage classes volumes and assets live in, as configured in
-- the file `storage.classes` names (default /etc/mobileops/storage-classes.yaml) over the
-- built-in `high-performance`, `standard` and `cold`. See docs/volumes.md.
local mo = require("mobileops")
local storage = mo.plugins.storage

local wf = mo.workflow{
  name = "storage",
  summary = "Storage classes",
}

wf:verb{
  name = "class",
  summary = "List storage classes, or inspect one: `class list`, `class inspect NAME`",
  args = { { name = "ACTION", summary = "list or inspect" },
           { name = "NAME", summary = "class name (inspect)", optional = true } },
  run = function(_, args)
    if args.ACTION == "list" then
      if args.NAME then mo.error("storage class list: takes no NAME") end
      return mo.output(mo.array(storage.class_list()), {
        { key = "name", format = function(v, row) return row.default and (v .. " (default)") or v end },
        { key = "quota" },
        { key = "defaultSize", title = "DEFAULT SIZE", format = function(v) return mo.bytes(v, "none") end },
        { key = "mountOptions", title = "MOUNT OPTIONS", format = function(v) return #v > 0 and table.concat(v, ",") or "-" end },
        { key = "volumes", format = function(v) return tostring(#v) end },
        { key = "directory" },
      })
    elseif args.ACTION == "inspect" then
      if not args.NAME then mo.error("storage class inspect: no NAME given") end
      return mo.print(mo.json_encode(storage.class_inspect{ name = args.NAME }, true))
    end
    mo.error(string.format("storage class: unknown action `%s` (list or inspect)", args.ACTION))
  end,
}

return wf
