-- mobileops image: the image store. The work is the storage plugin's (content-addressed
-- blobs, layers extracted once and shared, overlay roots for containers); this workflow
-- parses the command line and prints. create-img makes an ext4 image from a directory
-- for `container run --rootfs-img`.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "image",
  summary = "Manage images: import, load, save, pull, push, list, inspect, tag, rm, prune",
  description = "NAME is docker's form: busybox, busybox:1.36, localhost:5000/team/app:2. "
    .. "An image can be named by its id (the first 12 hex digits are enough).",
}

local storage = function() return mo.plugins.storage end

local quiet = { name = "quiet", short = "q", summary = "no progress output" }
local allow_devices = { name = "allow-devices", summary = "accept device nodes in the archive (refused by default)" }

local function concat(a, b)
  local out = {}
  for _, v in ipairs(a) do out[#out + 1] = v end
  for _, v in ipairs(b) do out[#out + 1] = v end
  return out
end

local function short_id(id) return (id or ""):gsub("^sha256:", ""):sub(1, 12) end

local function report(image, verb)
  if mo.json then return mo.output(image) end
  local names = image.names or {}
  mo.printf("%s %s%s", verb, short_id(image.id),
            #names > 0 and (" (" .. table.concat(names, ", ") .. ")") or "")
end

wf:verb{
  name = "import",
  summary = "Import a rootfs tarball (.tar, .tar.gz, .tar.xz, .tar.zst, .tar.bz2) as an image",
  options = { quiet, allow_devices },
  args = {
    { name = "FILE", summary = "the tarball" },
    { name = "NAME", summary = "image name, e.g. myapp:1.0", optional = true },
  },
  run = function(opts, args)
    report(storage().image_import{ file = args.FILE, name = args.NAME,
                                   quiet = opts.quiet, allowDevices = opts.allow_devices }, "imported")
  end,
}

wf:verb{
  name = "build-rootfs",
  summary = "Make an image from a directory holding a root filesystem",
  options = { quiet, allow_devices },
  args = {
    { name = "DIR", summary = "the root filesystem" },
    { name = "NAME", summary = "image name, e.g. myapp:1.0" },
  },
  run = function(opts, args)
    report(storage().image_build_rootfs{ dir = args.DIR, name = args.NAME,
                                         quiet = opts.quiet, allowDevices = opts.allow_devices }, "built")
  end,
}

wf:verb{
  name = "load",
  summary = "Load images from an OCI layout (directory or tar) or a docker-archive",
  options = {
    quiet, allow_devices,
    { name = "input", short = "i", type = "string", metavar = "FILE", summary = "the archive (or give it as FILE)" },
    { name = "name", type = "string", metavar = "NAME", summary = "name the loaded image NAME instead of the archive's names" },
  },
  args = { { name = "FILE", summary = "archive or OCI layout directory", optional = true, unless = "input" } },
  run = function(opts, args)
    local path = opts.input or args.FILE
    if not path then mo.error("no archive given (FILE or --input)") end
    local loaded = storage().image_load{ path = path, name = opts.name,
                                         quiet = opts.quiet, allowDevices = opts.allow_devices }
    if mo.json then return mo.output(mo.array(loaded)) end
    for _, image in ipairs(loaded) do report(image, "loaded") end
  end,
}

wf:verb{
  name = "save",
  summary = "Save images to an archive that podman and docker load",
  options = {
    quiet,
    { name = "output", short = "o", type = "string", metavar = "FILE", summary = "the archive to write" },
    { name = "format", type = "string", metavar = "FORMAT", summary = "docker-archive (default) or oci-archive" },
  },
  args = { { name = "NAME", summary = "the image to save" } },
  run = function(opts, args)
    if not opts.output then mo.error("no --output FILE given") end
    local r = storage().image_save{ images = { args.NAME }, output = opts.output,
                                    format = opts.format, quiet = opts.quiet }
    if mo.json then return mo.output(r) end
    mo.printf("saved %d image%s to %s (%s, %s of layers)", #r.images, #r.images == 1 and "" or "s",
              r.output, r.format, mo.bytes(r.bytes))
  end,
}

local registry_options = {
  quiet,
  { name = "creds", type = "string", metavar = "USER:PASSWORD", summary = "credentials for the registry" },
  { name = "tls-verify", type = "string", metavar = "true|false", summary = "check the registry's certificate (default true)" },
  { name = "ca-file", type = "string", metavar = "FILE", summary = "an extra CA certificate (PEM) for the registry" },
  { name = "plain-http", summary = "speak HTTP, not HTTPS (default for localhost registries)" },
  { name = "parallel", type = "int", metavar = "N", summary = "blobs transferred at once (default 3)" },
}

local function transfer_args(opts, t)
  t.creds = opts.creds
  if opts.tls_verify ~= nil then
    if opts.tls_verify ~= "true" and opts.tls_verify ~= "false" then
      mo.error("--tls-verify takes `true` or `false`")
    end
    t.tlsVerify = opts.tls_verify == "true"
  end
  t.caFile = opts.ca_file
  t.plainHttp = opts.plain_http
  t.parallel = opts.parallel
  t.quiet = opts.quiet
  return t
end

wf:verb{
  name = "pull",
  summary = "Pull an image from a registry (OCI distribution API)",
  options = concat(registry_options, {
    allow_devices,
    { name = "platform", type = "string", metavar = "OS/ARCH", summary = "the platform to pick from a multi-platform image (default linux/amd64)" },
  }),
  args = { { name = "REF", summary = "e.g. localhost:5000/team/app:1.0" } },
  run = function(opts, args)
    local r = storage().image_pull(transfer_args(opts, { ref = args.REF, platform = opts.platform,
                                                          allowDevices = opts.allow_devices }))
    report(r, "pulled")
  end,
}

wf:verb{
  name = "push",
  summary = "Push an image to a registry",
  options = registry_options,
  args = { { name = "NAME", summary = "image name or id" },
           { name = "DESTINATION", summary = "where to push (default: NAME)", optional = true } },
  run = function(opts, args)
    local r = storage().image_push(transfer_args(opts, { ref = args.NAME, destination = args.DESTINATION }))
    if mo.json then return mo.output(r) end
    mo.printf("pushed %s to %s (%s)", short_id(r.id), r.destination, r.digest)
  end,
}

wf:verb{
  name = "list",
  summary = "List images",
  run = function()
    local rows = {}
    for _, image in ipairs(storage().image_list()) do
      local names = image.familiarNames or {}
      if #names == 0 then names = { "<none>:<none>" } end
      for _, n in ipairs(names) do
        local repo, tag = n:match("^(.*):([^:/]+)$")
        rows[#rows + 1] = { repository = repo or n, tag = tag or "", id = image.id,
                            created = image.created, size = image.size, layers = #(image.layers or {}),
                            names = image.names }
      end
    end
    mo.output(mo.array(rows), {
      { key = "repository" },
      { key = "tag" },
      { key = "id", title = "IMAGE ID", format = short_id },
      { key = "created", format = function(v) return v and (v:sub(1, 19):gsub("T", " ")) or "" end },
      { key = "size", format = function(v) return mo.bytes(v) end },
      { key = "layers" },
    })
  end,
}

wf:verb{
  name = "inspect",
  summary = "Show an image: names, manifest, config, layers, containers using it (JSON)",
  args = { { name = "NAME", summary = "image name or id" } },
  run = function(_, args) mo.print(mo.json_encode(storage().image_inspect{ ref = args.NAME }, true)) end,
}

wf:verb{
  name = "tag",
  summary = "Give an image another name",
  args = { { name = "NAME", summary = "image name or id" }, { name = "NEW", summary = "the new name" } },
  run = function(_, args)
    local r = storage().image_tag{ ref = args.NAME, name = args.NEW }
    if mo.json then return mo.output(r) end
  end,
}

wf:verb{
  name = "rm",
  summary = "Remove names; an image goes with its last name unless a container uses it",
  options = { { name = "force", short = "f", summary = "remove by id even when the image has several names" } },
  args = { { name = "NAME", summary = "image names or ids", variadic = true } },
  run = function(opts, args)
    local r = storage().image_rm{ refs = args.NAME, force = opts.force }
    if mo.json then return mo.output(r) end
    for _, n in ipairs(r.untagged or {}) do mo.printf("untagged %s", n) end
    for _, id in ipairs(r.deleted or {}) do mo.printf("deleted %s", short_id(id)) end
  end,
}

wf:verb{
  name = "prune",
  summary = "Remove unnamed unused images, and layers and blobs no image uses",
  run = function()
    local r = storage().image_prune()
    if mo.json then return mo.output(r) end
    mo.printf("deleted %d image%s, %d layer%s, %d blob%s (%s)", #r.deleted, #r.deleted == 1 and "" or "s",
              r.layersRemoved, r.layersRemoved == 1 and "" or "s", r.blobsRemoved,
              r.blobsRemoved == 1 and "" or "s", mo.bytes(r.bytesFreed))
  end,
}

wf:verb{
  name = "unpack",
  summary = "Write an image's root filesystem (every layer applied) into a new directory",
  args = { { name = "NAME", summary = "image name or id" },
           { name = "DIR", summary = "the directory to create" } },
  run = function(_, args)
    local r = storage().image_flatten{ ref = args.NAME, target = args.DIR }
    if mo.json then return mo.output(r) end
    mo.printf("unpacked %s into %s", short_id(r.image), r.path)
  end,
}

wf:verb{
  name = "create-img",
  summary = "Make an ext4 rootfs image from a directory (for --rootfs-img)",
  options = {
    { name = "size", type = "string", metavar = "SIZE", summary = "image size, e.g. 2G or 512Mi (the file is sparse)" },
    { name = "force", summary = "replace FILE when it exists" },
  },
  args = {
    { name = "DIR", summary = "directory holding the root filesystem" },
    { name = "FILE", summary = "image file to write, e.g. rootfs.img" },
  },
  run = function(opts, args)
    if not opts.size then mo.error("no --size given (e.g. --size 2G)") end
    if not mo.json then
      mo.eprint(string.format("creating %s (%s) from %s ...", args.FILE, opts.size, args.DIR))
    end
    local r = storage().create_img{
      dir = args.DIR, file = args.FILE, size = opts.size, force = opts.force,
    }
    if mo.json then
      r.output = nil
      return mo.output(r)
    end
    mo.printf("created %s: ext4, %s (sparse: %s allocated) from %s", r.file, r.size_text,
              r.allocated_text, r.dir)
  end,
}

return wf
