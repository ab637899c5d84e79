-- mobileops image: root filesystem images. create-img makes an ext4 image from a
-- directory for `container run --rootfs-img`; the work is the nsruntime plugin's
-- `create_img` method (mkfs.ext4 -d on a sparse file).
local mo = require("mobileops")

local wf = mo.workflow{
  name = "image",
  summary = "Make root filesystem images",
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
    local r = mo.plugins.nsruntime.create_img{
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
