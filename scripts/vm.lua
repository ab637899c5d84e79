-- mobileops vm: micro-VMs (the krun plugin): the guest's kernel and initramfs built once
-- and cached, the backends this host can use, a program run in a VM of its own, and the
-- qemu command line of one. Containers in VMs are `container ... --runtime krun`
-- (docs/vm.md).
local mo = require("mobileops")

local wf = mo.workflow{
  name = "vm",
  summary = "Micro-VMs: prepare the guest, show the backends, run a program in a VM",
  description = "The qemu backend boots Debian's kernel (linux-image-amd64) with mobileops's own guest init; libkrun is used where libkrun.so.1 is installed.",
}

local function krun()
  local ok, list = pcall(mo.plugin_info, "krun")
  if not ok or not list then mo.error("the krun plugin is not installed") end
  return mo.plugins.krun
end

wf:verb{
  name = "prepare",
  summary = "Build and cache the guest kernel (vmlinux) and initramfs, and probe KVM",
  options = { { name = "quiet", short = "q", summary = "no progress on the terminal" } },
  run = function(opts)
    local r = krun().prepare{ quiet = opts.quiet or mo.json }
    if mo.json then return mo.output(r) end
    mo.printf("guest %s: %s, %s", r.kernelVersion, r.kernel, r.initramfs)
    mo.printf("accelerator: %s (%s)", r.accel.name, r.accel.why)
  end,
}

wf:verb{
  name = "status",
  summary = "The micro-VM backends on this host and the prepared guest",
  run = function()
    local s = krun().status()
    if mo.json then return mo.output(s) end
    mo.printf("qemu:    %s", s.qemu.available and s.qemu.path or ("not available: " .. (s.qemu.why or "")))
    mo.printf("guest:   %s", s.assets ~= mo.null and s.assets and (s.assets.kernelVersion .. " in " .. s.assets.dir) or "not prepared (`mobileops vm prepare`)")
    mo.printf("libkrun: %s", s.libkrun.available and "available" or s.libkrun.why)
  end,
}

-- run's options and arguments as the krun plugin's methods take them.
local run_options = {
  { name = "env", short = "e", type = "list", metavar = "K=V", summary = "set an environment variable" },
  { name = "workdir", short = "w", type = "string", metavar = "DIR", summary = "working directory in the guest" },
  { name = "volume", short = "v", type = "list", metavar = "HOST:GUEST[:ro]", summary = "share a host directory" },
  { name = "read-only", summary = "the root filesystem is read-only in the guest" },
  { name = "vcpus", type = "int", metavar = "N", summary = "virtual CPUs (default 2)" },
  { name = "vm-memory", type = "string", metavar = "SIZE", summary = "guest memory (default 512Mi)" },
}
local run_args = { { name = "ROOTFS", summary = "root filesystem directory" },
                   { name = "CMD", summary = "command and arguments", variadic = true } }

local function vm_request(opts, args)
  local volumes = {}
  for _, v in ipairs(opts.volume or {}) do
    local src, dst, mode = v:match("^([^:]+):([^:]+):?(.*)$")
    if not src or (mode ~= "" and mode ~= "ro" and mode ~= "rw") then
      mo.error("invalid --volume `" .. v .. "`: expected HOST:GUEST[:ro|rw]")
    end
    volumes[#volumes + 1] = { source = src, target = dst, readOnly = mode == "ro" }
  end
  local memory
  if opts.vm_memory then
    local spec = mo.spec.apply_options(nil, { vm_memory = opts.vm_memory })
    memory = spec.vm.memory
  end
  local env = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
  for _, e in ipairs(opts.env or {}) do env[#env + 1] = e end
  return { rootfs = args.ROOTFS, args = args.CMD, env = env, cwd = opts.workdir,
           readOnly = opts.read_only, volumes = volumes, vcpus = opts.vcpus, memory = memory,
           timeout = opts.timeout }
end

wf:verb{
  name = "command",
  summary = "Print the qemu command line of a VM, its job written into --dir (to run it by hand)",
  description = "The command expects the guest's stdout on fd 3, its stderr on fd 4 and one end of a unix stream socket pair on fd 5, the control port, whose other end must answer the guest's `drain` line (plugins/krun/guest/protocol.h; tools/bench/vm-bench.sh does).",
  options = (function()
    local o = { { name = "dir", type = "string", metavar = "DIR", summary = "the VM's directory (job share, console log); required" } }
    for _, x in ipairs(run_options) do o[#o + 1] = x end
    return o
  end)(),
  args = run_args,
  run = function(opts, args)
    if not opts.dir then mo.error("--dir DIR is required: the VM's job is written there") end
    local request = vm_request(opts, args)
    request.workDir = opts.dir
    local r = krun().command(request)
    if mo.json then return mo.output(r) end
    local quoted = {}
    for _, a in ipairs(r.argv) do
      quoted[#quoted + 1] = a:match("^[%w@%%+=:,./_-]+$") and a or ("'" .. a:gsub("'", "'\\''") .. "'")
    end
    mo.print(table.concat(quoted, " "))
  end,
}

wf:verb{
  name = "run",
  summary = "Run a program in a micro-VM in the foreground; exits with its exit status",
  options = (function()
    local o = {}
    for _, x in ipairs(run_options) do o[#o + 1] = x end
    o[#o + 1] = { name = "timeout", type = "int", metavar = "SECONDS", summary = "kill the VM after this long (default 3600)" }
    return o
  end)(),
  args = run_args,
  run = function(opts, args)
    return krun().run(vm_request(opts, args)).exitCode
  end,
}

return wf
