-- mobileops assets: host files and directories registered under a storage class, backed
-- up as tar.zst with a per-file sha256 manifest, restored atomically, and verified
-- (archives re-hashed, the live path compared with the last backup). docs/volumes.md.
local mo = require("mobileops")
local storage = mo.plugins.storage

local wf = mo.workflow{
  name = "assets",
  summary = "Back up, restore and verify registered host files and directories",
}

local names_arg = { { name = "NAME", summary = "asset names (default: all)", variadic = true, optional = true } }

wf:verb{
  name = "add",
  summary = "Register a host file or directory under a storage class",
  options = { { name = "name", type = "string", metavar = "NAME", summary = "asset name (default: the path's last component)" } },
  args = { { name = "PATH", summary = "file or directory" },
           { name = "CLASS", summary = "storage class its backups go to" },
           { name = "DESCRIPTION", summary = "what it is", optional = true } },
  run = function(opts, args)
    local a = storage.asset_add{ path = args.PATH, class = args.CLASS, description = args.DESCRIPTION or "", name = opts.name }
    if mo.json then return mo.output(a) end
    mo.print(a.name)
  end,
}

wf:verb{
  name = "list",
  summary = "List assets",
  run = function()
    mo.output(mo.array(storage.asset_list()), {
      { key = "name" }, { key = "class" }, { key = "type" }, { key = "path" },
      { key = "backupCount", title = "BACKUPS" },
      { key = "lastBackup", title = "LAST BACKUP", format = function(v) return type(v) == "string" and v or "never" end },
      { key = "description" },
    })
  end,
}

wf:verb{
  name = "inspect",
  summary = "Show an asset and its backups (JSON)",
  args = { { name = "NAME", summary = "asset name" } },
  run = function(_, args) mo.print(mo.json_encode(storage.asset_inspect{ name = args.NAME }, true)) end,
}

wf:verb{
  name = "rm",
  summary = "Forget an asset (its backups stay unless --purge)",
  options = { { name = "purge", summary = "delete its backup archives and manifests too" } },
  args = { { name = "NAME", summary = "asset name" } },
  run = function(opts, args) storage.asset_rm{ name = args.NAME, purge = opts.purge } end,
}

wf:verb{
  name = "backup",
  summary = "Back up assets to <class directory>/assets/NAME/<UTC time>.tar.zst",
  options = { { name = "quiet", short = "q", summary = "no progress display" } },
  args = names_arg,
  run = function(opts, args)
    local r = storage.asset_backup{ names = mo.array(args.NAME), quiet = opts.quiet or mo.json }
    if mo.json then return mo.output(r) end
    for _, b in ipairs(r.backups) do
      mo.printf("%s: %s (%s, %d entries, %s)", b.asset, b.file, mo.bytes(b.size), b.files, b.sha256)
    end
  end,
}

wf:verb{
  name = "restore",
  summary = "Put an asset back as a backup holds it, atomically",
  options = {
    { name = "backup", type = "string", metavar = "ID", summary = "which backup (default: the newest; see `assets inspect`)" },
    { name = "quiet", short = "q", summary = "no progress display" },
  },
  args = { { name = "NAME", summary = "asset name" } },
  run = function(opts, args)
    local r = storage.asset_restore{ name = args.NAME, backup = opts.backup, quiet = opts.quiet or mo.json }
    if mo.json then return mo.output(r) end
    mo.printf("%s: %s restored from backup %s", r.asset, r.path, r.backup)
  end,
}

wf:verb{
  name = "verify",
  summary = "Re-hash the backups and compare each asset with its last backup; exit 1 on any difference",
  args = names_arg,
  run = function(_, args)
    local r = storage.asset_verify{ names = mo.array(args.NAME) }
    if mo.json then
      mo.output(r)
    else
      for _, a in ipairs(r.assets) do
        mo.printf("%s %s (%s)", a.ok and "ok  " or "FAIL", a.name, a.path)
        for _, b in ipairs(a.archives) do
          if b.status ~= "ok" then mo.printf("  archive %s: %s (%s)", b.id, b.status, b.file) end
          if b.manifest ~= "ok" then mo.printf("  manifest of %s: %s", b.id, b.manifest) end
        end
        local live = a.live
        if live.status ~= "unchanged" then mo.printf("  %s: %s", a.path, live.status) end
        for _, c in ipairs(live.changed or {}) do mo.printf("  changed  %s (%s)", c.path, c.what) end
        for _, p in ipairs(live.added or {}) do mo.printf("  added    %s", p) end
        for _, p in ipairs(live.removed or {}) do mo.printf("  removed  %s", p) end
      end
      if #r.assets == 0 then mo.print("no assets (add one with `mobileops assets add PATH CLASS DESCRIPTION`)") end
    end
    if not r.ok then return 1 end
  end,
}

return wf
