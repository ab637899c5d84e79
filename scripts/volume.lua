-- mobileops volume: named volumes in storage classes, with real size limits (an ext4
-- image per volume, or project quotas), backups as tar.zst and atomic restores. The work
-- is the storage plugin's volume_* methods; docs/volumes.md describes it all.
local mo = require("mobileops")
local storage = mo.plugins.storage

local wf = mo.workflow{
  name = "volume",
  summary = "Create and manage named volumes",
  description = "Volumes live in storage classes (see `mobileops storage class list`); a size is enforced for real: writes past it fail with ENOSPC or EDQUOT.",
}

local name_arg = { { name = "NAME", summary = "volume name" } }

wf:verb{
  name = "create",
  summary = "Create a volume (empty; limited to --size when given)",
  options = {
    { name = "class", type = "string", metavar = "CLASS", summary = "storage class (default: the configured default, `standard`)" },
    { name = "size", type = "string", metavar = "SIZE", summary = "size limit, e.g. 5Gi (default: the class's defaultSize, or none)" },
    { name = "label", type = "list", metavar = "K=V", summary = "a label to record with the volume" },
  },
  args = name_arg,
  run = function(opts, args)
    local v = storage.volume_create{ name = args.NAME, class = opts.class, size = opts.size, labels = opts.label }
    if mo.json then return mo.output(v) end
    mo.print(v.name)
  end,
}

wf:verb{
  name = "list",
  summary = "List volumes",
  run = function()
    mo.output(mo.array(storage.volume_list()), {
      { key = "name" },
      { key = "class" },
      { key = "size", format = function(v, row) return type(v) == "number" and mo.bytes(v) or "unlimited" end },
      { key = "quota" },
      { key = "users", format = function(v) return tostring(#(v or {})) end },
      { key = "status" },
      { key = "created" },
    })
  end,
}

wf:verb{
  name = "inspect",
  summary = "Show a volume: class, size, used bytes, mount point, quota, users (JSON)",
  args = name_arg,
  run = function(_, args) mo.print(mo.json_encode(storage.volume_inspect{ name = args.NAME }, true)) end,
}

wf:verb{
  name = "rm",
  summary = "Remove volumes and their data",
  options = { { name = "force", short = "f", summary = "remove even while containers use it (they keep what they mounted until they exit)" } },
  args = { { name = "NAME", summary = "volume name" },
           { name = "MORE", summary = "more volumes", variadic = true, optional = true } },
  run = function(opts, args)
    return mo.each(args.NAME, args.MORE, function(n) storage.volume_rm{ name = n, force = opts.force } end)
  end,
}

wf:verb{
  name = "prune",
  summary = "Remove every volume that no container uses",
  run = function()
    local r = storage.volume_prune()
    if mo.json then return mo.output(r) end
    for _, n in ipairs(r.removed) do mo.print(n) end
    mo.printf("removed %d volume(s), %s reclaimed", #r.removed, mo.bytes(r.reclaimed))
  end,
}

wf:verb{
  name = "backup",
  summary = "Write a volume's data to a tar.zst archive (its sha256 is recorded)",
  options = {
    { name = "output", short = "o", type = "string", metavar = "FILE.tar.zst", summary = "the archive to write" },
    { name = "quiet", short = "q", summary = "no progress display" },
  },
  args = name_arg,
  run = function(opts, args)
    if not opts.output then mo.error("volume backup: no -o FILE.tar.zst given") end
    local r = storage.volume_backup{ name = args.NAME, output = opts.output, quiet = opts.quiet or mo.json }
    if mo.json then return mo.output(r) end
    mo.printf("%s: %s (%s, %s)", args.NAME, r.file, mo.bytes(r.size), r.sha256)
  end,
}

wf:verb{
  name = "restore",
  summary = "Replace a volume's data with a backup, atomically (creates the volume if needed)",
  description = "The archive must match the sha256 `volume backup` recorded (here, or in FILE.sha256 beside it). It is unpacked beside the volume's data and swapped in only when complete; a corrupt or truncated archive is refused and the data is left as it was.",
  options = {
    { name = "class", type = "string", metavar = "CLASS", summary = "class for a volume that does not exist (default: the backup's, else the default)" },
    { name = "size", type = "string", metavar = "SIZE", summary = "size for a volume that does not exist (default: the backup's)" },
    { name = "unverified", summary = "restore an archive neither recorded here nor with a FILE.sha256 beside it" },
    { name = "quiet", short = "q", summary = "no progress display" },
  },
  args = { { name = "NAME", summary = "volume name" },
           { name = "FILE", summary = "a backup written by `volume backup`" } },
  run = function(opts, args)
    local r = storage.volume_restore{ name = args.NAME, file = args.FILE, class = opts.class,
                                      size = opts.size, unverified = opts.unverified,
                                      quiet = opts.quiet or mo.json }
    if mo.json then return mo.output(r) end
    mo.printf("%s: restored from %s%s", args.NAME, r.file, r.created and " (volume created)" or "")
  end,
}

return wf
