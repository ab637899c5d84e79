-- mobileops integrity: manifests of images, containers, assets and paths (every path's
-- type, mode, owner, size, link, xattrs and sha256, and a Merkle root), verification and
-- drift reports, Ed25519 signatures, ext4 image checks, the toolbox self-check and
-- security audits. docs/integrity.md describes it all.
local mo = require("mobileops")
local plugin = mo.plugins.integrity

local wf = mo.workflow{
  name = "integrity",
  summary = "Verify images, containers and mobileops itself; sign manifests; audit containers",
  description = "Image layers get a manifest when they are imported, loaded or pulled, and assets when they are added; `container create --verify=strict` refuses a tampered image.",
}

local target_arg = { name = "TARGET", summary = "image, container, asset:NAME, or a directory or file path" }

local function is_path(s) return s:sub(1, 1) == "/" or s:sub(1, 1) == "." end

-- A command-line name as the integrity service's target, and how to show it.
local function resolve(ref)
  local kind, rest = ref:match("^(%a+):(.+)$")
  if kind == "layer" or kind == "asset" or kind == "path" then return ref, ref end
  if kind == "container" then
    local st = mo.runtime.state(rest)
    return "container:" .. st.id, st.name
  end
  if kind == "image" then
    local img = mo.plugins.storage.image_resolve{ ref = rest }
    return "image:" .. img.id, rest
  end
  if is_path(ref) then return ref, ref end
  local ok, st = pcall(mo.runtime.state, ref)
  if ok and type(st) == "table" then
    if st.spec and st.spec.imageId then return "container:" .. st.id, st.name end
    if st.rootfs and st.rootfs ~= "" then return "path:" .. st.rootfs, st.name .. " (" .. st.rootfs .. ")" end
    mo.error(string.format("container `%s` runs from an ext4 image: check it with `mobileops integrity check-img FILE`", ref))
  end
  local found, img = pcall(mo.plugins.storage.image_resolve, { ref = ref })
  if found and type(img) == "table" then return "image:" .. img.id, ref end
  mo.error(string.format("`%s`: no container, image or path of that name", ref))
end

local function mode_string(v) return type(v) == "number" and string.format("%04o", v) or tostring(v) end

local function describe(change)
  local parts = {}
  for _, what in ipairs(change.what or {}) do
    local b, a = change.before or {}, change.after or {}
    if what == "mode" then
      parts[#parts + 1] = string.format("mode %s -> %s", mode_string(b.mode), mode_string(a.mode))
    elseif what == "owner" then
      parts[#parts + 1] = string.format("owner %s:%s -> %s:%s", tostring(b.uid), tostring(b.gid), tostring(a.uid), tostring(a.gid))
    elseif what == "link" then
      parts[#parts + 1] = string.format("link %s -> %s", tostring(b.target), tostring(a.target))
    elseif what == "size" then
      parts[#parts + 1] = string.format("size %s -> %s", tostring(b.size), tostring(a.size))
    else
      parts[#parts + 1] = what
    end
  end
  return table.concat(parts, ", ")
end

local function print_diff(diff, indent)
  if not diff then return end
  for _, c in ipairs(diff.modified or {}) do mo.printf("%smodified %s: %s", indent, c.path, describe(c)) end
  for _, p in ipairs(diff.added or {}) do mo.printf("%sadded    %s", indent, p) end
  for _, p in ipairs(diff.removed or {}) do mo.printf("%sremoved  %s", indent, p) end
end

local function summary(r)
  local c = r.checked or {}
  return string.format("%d files, %s in %.2f s", c.files or 0, mo.bytes(c.bytes or 0), c.seconds or 0)
end

wf:verb{
  name = "record",
  summary = "Record the manifest of an image (its layers), asset or path",
  options = { { name = "again", summary = "an image: record its layers again too (after a deliberate change; signatures no longer match)" } },
  args = { target_arg },
  run = function(opts, args)
    local target, shown = resolve(args.TARGET)
    if target:match("^container:") then
      mo.error("a container's manifest is its image's: record the image")
    end
    local r
    if target:match("^image:") then
      -- through the storage plugin, which knows where the layers are; layers recorded
      -- before the integrity plugin was installed get their manifests now
      r = mo.plugins.storage.image_record_manifests{ ref = target:sub(7), again = opts.again }
    else
      r = mo.integrity.record(target)
    end
    if mo.json then return mo.output(r) end
    mo.printf("%s: root %s (%d files, %s)", shown, r.root, r.files or 0, mo.bytes(r.bytes or 0))
  end,
}

wf:verb{
  name = "verify",
  summary = "Check an image, container, asset or path against its manifest; exit 1 on any difference",
  options = {
    { name = "key", type = "list", metavar = "PUB", summary = "require a valid signature by this Ed25519 public key" },
    { name = "quiet", short = "q", summary = "no progress on the terminal" },
    { name = "for-container", type = "string", metavar = "ID", summary = "report the result as an event for this container (what --verify=lazy runs)" },
    { name = "mode", type = "string", metavar = "MODE", summary = "the --verify mode the event names" },
  },
  args = { target_arg },
  run = function(opts, args)
    local target, shown = resolve(args.TARGET)
    local r = plugin.verify{ target = target, keys = opts.key, quiet = opts.quiet or mo.json,
                             container = opts.for_container, mode = opts.mode, first = 10 }
    if opts.for_container then
      if not r.clean then
        mo.warn(string.format("integrity: `%s` differs from its manifest (%d %s: %s); the container "
                              .. "was started anyway (--verify=lazy)", shown, r.problems,
                              r.problems == 1 and "difference" or "differences", table.concat(r.first, ", ")))
      end
      return r.clean and 0 or 1
    end
    if mo.json then
      mo.output(r)
      return r.clean and 0 or 1
    end
    if r.clean then
      mo.printf("%s: clean (%s)", shown, summary(r))
    else
      mo.printf("%s: %d %s from its manifest (%s)", shown, r.problems,
                r.problems == 1 and "difference" or "differences", summary(r))
      for _, line in ipairs(r.first or {}) do
        if line:match("^signature:") or line:match("^image manifest:") or line:match("^layer ") then
          mo.printf("  %s", line)
        end
      end
      print_diff(r.diff, "  ")
      for _, l in ipairs(r.layers or {}) do
        if not l.clean then
          mo.printf("  layer %s (%s):", l.diffId:sub(1, 19), l.path or "")
          print_diff(l.diff, "    ")
        end
      end
    end
    if r.signature and r.signature.required then mo.printf("signature: %s", r.signature.message or "") end
    if r.changes then
      local n = #(r.changes.added or {}) + #(r.changes.removed or {}) + #(r.changes.modified or {})
      if n > 0 then
        mo.printf("the container's own changes (its writable layer, not a failure): %d", n)
        print_diff(r.changes, "  ")
      end
    end
    return r.clean and 0 or 1
  end,
}

wf:verb{
  name = "show",
  summary = "Show a recorded manifest: its root and every path",
  args = { target_arg },
  run = function(_, args)
    local target = resolve(args.TARGET)
    if target:match("^container:") then mo.error("a container's manifest is its image's: show the image") end
    local m = plugin.show{ target = target }
    if mo.json then return mo.output(m) end
    mo.printf("%s  root %s  %d files  %s  recorded %s", m.target, m.root, m.files or 0, mo.bytes(m.bytes or 0), m.recorded or "")
    for _, l in ipairs(m.layers or {}) do mo.printf("  layer %s  root %s", l.diffId, l.root) end
    for _, e in ipairs(m.entries or {}) do
      local extra = e.sha256 or e.target and ("-> " .. e.target) or ""
      mo.printf("%-7s %04o %5d:%-5d %10s  %s  %s", e.type, e.mode, e.uid, e.gid, e.size and tostring(e.size) or "-", e.path, extra)
    end
  end,
}

wf:verb{
  name = "list",
  summary = "List the recorded manifests",
  run = function()
    mo.output(mo.array(plugin.list()), {
      { key = "target" },
      { key = "root", format = function(v) return (v or ""):sub(1, 16) end },
      { key = "files" },
      { key = "bytes", title = "SIZE", format = function(v) return mo.bytes(v or 0) end },
      { key = "signatures", title = "SIGNED BY", format = function(v) return table.concat(v or {}, ",") end },
      { key = "recorded" },
    })
  end,
}

wf:verb{
  name = "forget",
  summary = "Drop a recorded manifest and its signatures",
  args = { target_arg },
  run = function(_, args)
    local target = resolve(args.TARGET)
    local r = plugin.forget{ target = target }
    if not r.removed then mo.error(string.format("no manifest recorded for `%s`", args.TARGET)) end
  end,
}

wf:verb{
  name = "keygen",
  summary = "Make an Ed25519 key pair for signing: PATH (private, 0600) and PATH.pub",
  args = { { name = "PATH", summary = "the private key file to write" } },
  run = function(_, args)
    local r = plugin.keygen{ path = args.PATH }
    if mo.json then return mo.output(r) end
    mo.printf("%s (private), %s (public): %s", r.private, r.public, r.keyId)
  end,
}

wf:verb{
  name = "sign",
  summary = "Sign an image's (or path's) manifest with an Ed25519 private key; it must verify clean first",
  options = { { name = "key", type = "string", metavar = "KEY", summary = "the private key (PEM, from `integrity keygen` or `openssl genpkey -algorithm ed25519`)" } },
  args = { target_arg },
  run = function(opts, args)
    if not opts.key then mo.error("sign: give the private key with --key KEY") end
    local target, shown = resolve(args.TARGET)
    local r = plugin.sign{ target = target, key = opts.key }
    if mo.json then return mo.output(r) end
    mo.printf("%s: root %s signed by %s", shown, r.root, r.keyId)
  end,
}

wf:verb{
  name = "check-img",
  summary = "Check an ext2/3/4 image file read-only (e2fsck -n); exit 1 unless clean",
  args = { { name = "FILE", summary = "the image file" } },
  run = function(_, args)
    local r = plugin.check_img{ file = args.FILE }
    if mo.json then
      mo.output(r)
    else
      mo.printf("%s: %s", r.file, r.verdict)
      if not r.clean and r.output and r.output ~= "" then mo.eprint(r.output) end
      if r.mounted then mo.warn(r.file .. " is mounted: a check of a live filesystem can report errors that are not there") end
    end
    return r.clean and 0 or 1
  end,
}

wf:verb{
  name = "check",
  summary = "Check mobileops's own files (binary, plugins, scripts) against the toolbox manifest; exit 1 on any change",
  options = { { name = "manifest", type = "string", metavar = "FILE", summary = "the toolbox manifest (default: PREFIX/lib/mobileops/toolbox.json)" } },
  run = function(opts)
    local r = plugin.toolbox_check{ manifest = opts.manifest }
    if mo.json then
      mo.output(r)
      return r.ok and 0 or 1
    end
    if r.ok then
      mo.printf("toolbox: clean (%d files checked against %s)", r.checked or 0, r.manifest)
      return 0
    end
    mo.printf("toolbox: differs from %s", r.manifest)
    for _, c in ipairs(r.changed or {}) do
      mo.printf("  changed  %s (%s)", c.path, table.concat(c.what or {}, ", "))
    end
    for _, p in ipairs(r.missing or {}) do mo.printf("  missing  %s", p) end
    for _, p in ipairs(r.extra or {}) do mo.printf("  extra    %s (not in the manifest)", p) end
    return 1
  end,
}

local severity_order = { critical = 1, high = 2, medium = 3, low = 4, info = 5 }

wf:verb{
  name = "audit",
  summary = "The security posture of containers: findings with severity and fix, and a score",
  options = { { name = "min-score", type = "int", metavar = "N", summary = "exit 1 when a container scores below N" } },
  args = { { name = "CONTAINER", summary = "containers to audit (default: all)", variadic = true, optional = true } },
  run = function(opts, args)
    local names = args.CONTAINER or {}
    if #names == 0 then
      for _, c in ipairs(mo.runtime.list(true)) do names[#names + 1] = c.id end
    end
    local reports = {}
    for _, n in ipairs(names) do
      reports[#reports + 1] = plugin.audit{ container = mo.runtime.state(n) }
    end
    local below = false
    for _, r in ipairs(reports) do
      if opts.min_score and r.score < opts.min_score then below = true end
    end
    if mo.json then
      mo.output(mo.array(reports))
    else
      if #reports == 0 then mo.print("no containers") end
      for _, r in ipairs(reports) do
        mo.printf("%s (%s): score %d/100, grade %s", r.name, r.id:sub(1, 12), r.score, r.grade)
        table.sort(r.findings, function(a, b)
          return (severity_order[a.severity] or 9) < (severity_order[b.severity] or 9)
        end)
        for _, f in ipairs(r.findings) do
          mo.printf("  %-8s %-20s %s", f.severity, f.id, f.message)
          mo.printf("  %-8s %-20s fix: %s", "", "", f.fix)
        end
      end
    end
    return below and 1 or 0
  end,
}

wf:verb{
  name = "network",
  summary = "The bridges, veths and nftables rules mobileops expects against what exists; exit 1 on any difference",
  run = function()
    local ok, list = pcall(mo.providers, "network")
    if not ok or #list == 0 then mo.error("no network plugin is installed (bridge)") end
    local r = mo.plugins.bridge.network_check()
    if mo.json then
      mo.output(r)
      return r.ok and 0 or 1
    end
    local function section(title, s)
      if not s then return end
      mo.printf("%s: %d expected", title, #(s.expected or {}))
      for _, x in ipairs(s.missing or {}) do mo.printf("  missing  %s", type(x) == "table" and mo.json_encode(x) or x) end
      for _, x in ipairs(s.extra or {}) do mo.printf("  extra    %s", type(x) == "table" and mo.json_encode(x) or x) end
    end
    section("bridges", r.bridges)
    section("veths", r.veths)
    for _, x in ipairs(r.veths and r.veths.detached or {}) do mo.printf("  detached %s", type(x) == "table" and mo.json_encode(x) or x) end
    if r.nft then
      mo.printf("nftables table %s: %s", r.nft.table or "inet mobileops", r.nft.present and "present" or "absent")
      for _, x in ipairs(r.nft.missing or {}) do mo.printf("  missing  %s", type(x) == "table" and mo.json_encode(x) or x) end
      for _, x in ipairs(r.nft.extra or {}) do mo.printf("  extra    %s", type(x) == "table" and mo.json_encode(x) or x) end
    end
    if r.addresses then
      for _, x in ipairs(r.addresses.missing or {}) do mo.printf("  missing address %s", type(x) == "table" and mo.json_encode(x) or x) end
    end
    mo.print(r.ok and "network: as expected" or "network: differs from what mobileops expects")
    return r.ok and 0 or 1
  end,
}

wf:verb{
  name = "status",
  summary = "Verification settings, fs-verity support and how many manifests are kept",
  run = function()
    local s = plugin.status()
    if mo.json then return mo.output(s) end
    mo.printf("verify at start:     %s (integrity.verify)", s.verify)
    mo.printf("signature required:  %s (integrity.require_signature)", s.requireSignature and "yes" or "no")
    mo.printf("trusted keys:        %s", s.trustedKeys ~= "" and s.trustedKeys or "none")
    mo.printf("plugin loading:      %s (plugins.verify)", s.pluginVerify)
    mo.printf("fs-verity:           %s", s.fsVerity.detail)
    mo.printf("manifests:           %d", s.manifests)
  end,
}

wf:verb{
  name = "gc",
  summary = "Drop the manifests of layers, images and assets that are gone",
  run = function()
    local r = plugin.gc()
    if mo.json then return mo.output(r) end
    mo.printf("%d records dropped", #(r.removed or {}))
  end,
}

return wf
