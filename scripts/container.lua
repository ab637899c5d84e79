-- mobileops container: run and manage containers.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "container",
  summary = "Run and manage containers",
  description = "IMAGE is an image in the store (a name such as busybox:latest or an id; see "
    .. "`mobileops image`), or a directory holding a root filesystem when it starts with /, ./ "
    .. "or ../.",
}

-- Resource options of create, boot, run and update.
local resource_options = {
  { name = "memory", short = "m", type = "string", metavar = "QUANTITY", summary = "memory limit, e.g. 512Mi or 1G" },
  { name = "memory-reservation", type = "string", metavar = "QUANTITY", summary = "memory request (soft limit / memory.low)" },
  { name = "cpus", type = "string", metavar = "N", summary = "CPU limit, e.g. 1.5 or 500m" },
  { name = "cpu-shares", type = "int", metavar = "N", summary = "relative CPU weight (1024 = one CPU's worth)" },
  { name = "cpuset-cpus", type = "string", metavar = "LIST", summary = "CPUs to run on, e.g. 0-1" },
  { name = "pids-limit", type = "int", summary = "maximum number of processes (-1: none)" },
  { name = "memory-swap", type = "string", metavar = "QUANTITY", summary = "memory plus swap limit (-1: unlimited swap); needs --memory" },
  { name = "memory-swappiness", type = "int", metavar = "0..100", summary = "swap tendency (cgroup v1 only)" },
  { name = "blkio-weight", type = "int", metavar = "10..1000", summary = "relative block I/O weight" },
  { name = "device-read-bps", type = "list", metavar = "DEVICE:RATE", summary = "read rate limit of a block device, e.g. /dev/vda:1mb" },
  { name = "device-write-bps", type = "list", metavar = "DEVICE:RATE", summary = "write rate limit of a block device, e.g. /dev/vda:1mb" },
  { name = "device-read-iops", type = "list", metavar = "DEVICE:N", summary = "read operations per second limit of a block device" },
  { name = "device-write-iops", type = "list", metavar = "DEVICE:N", summary = "write operations per second limit of a block device" },
  { name = "ignore-unsupported", summary = "warn about limits this host cannot apply instead of failing" },
}

-- Their keys as mo.spec.apply_options names them.
local resource_keys = {
  "memory", "memory_reservation", "cpus", "cpu_shares", "cpuset_cpus", "pids_limit",
  "memory_swap", "memory_swappiness", "blkio_weight",
  "device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops",
  "ignore_unsupported",
}

-- Options shared by create, boot and run; names match mo.spec.apply_options.
local create_options = {
  { name = "file", short = "f", type = "string", metavar = "SPEC", summary = "VirtualRoot spec (YAML or JSON; - reads stdin); flags override it" },
  { name = "hostname", type = "string", metavar = "NAME", summary = "hostname inside the container (default: the name)" },
  { name = "env", short = "e", type = "list", metavar = "K=V", summary = "set an environment variable (K alone: take it from here)" },
  { name = "env-file", type = "list", metavar = "FILE", summary = "read K=V lines from a file" },
  { name = "workdir", short = "w", type = "string", metavar = "DIR", summary = "working directory inside the container" },
  { name = "user", short = "u", type = "string", metavar = "UID[:GID]", summary = "run as this user (number or name from the rootfs)" },
  { name = "group-add", type = "list", metavar = "GID", summary = "additional group" },
  { name = "read-only", summary = "mount the root filesystem read-only" },
  { name = "network", type = "string", metavar = "MODE", summary = "private (default: own namespace, loopback up), host, none, bridge (the default network) or a network's name" },
  { name = "publish", short = "p", type = "list", metavar = "[IP:]HOST:CTR[/tcp|udp]", summary = "publish a container port on the host (puts the container on the bridge network)" },
  { name = "init", summary = "run a small init as PID 1 that forwards signals and reaps zombies" },
  { name = "ulimit", type = "list", metavar = "NAME=SOFT[:HARD]", summary = "resource limit (default: inherited from this process)" },
  { name = "userns", type = "string", metavar = "HOSTID:SIZE", summary = "new user namespace mapping container root to HOSTID" },
  { name = "pid", type = "string", metavar = "host|private", summary = "host: share this host's PID namespace (the container sees every process)" },
  { name = "ipc", type = "string", metavar = "host|private", summary = "host: share this host's IPC namespace (System V IPC, POSIX message queues)" },
  { name = "uts", type = "string", metavar = "host|private", summary = "host: share this host's hostname (no --hostname then)" },
  { name = "sysctl", type = "list", metavar = "KEY=VALUE", summary = "set a namespaced kernel parameter in the container (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, kernel.domainname)" },
  { name = "stop-timeout", type = "int", metavar = "SECONDS", summary = "seconds `stop` waits before SIGKILL (default 10)" },
  { name = "runtime", type = "string", metavar = "NAME", summary = "runtime provider: namespace (default) or krun (a micro-VM); see `mobileops system doctor`" },
  { name = "isolation", type = "string", metavar = "vm|namespace|auto", summary = "vm: a micro-VM of its own (--runtime krun); auto: a VM when a VM backend works here, else namespaces" },
  { name = "vcpus", type = "int", metavar = "N", summary = "virtual CPUs of a micro-VM (default 2)" },
  { name = "vm-memory", type = "string", metavar = "SIZE", summary = "memory of a micro-VM, e.g. 1Gi (default 512Mi); --memory limits the VMM process on the host" },
  { name = "init-system", summary = "boot an init system (default command /sbin/init: systemd, OpenRC) as PID 1; `stop` sends SIGRTMIN+3" },
  { name = "hw-access", summary = "DANGEROUS: give the container the host's devices (/dev is the host's devtmpfs) and a writable /sys device tree" },
  { name = "volume", short = "v", type = "list", metavar = "SOURCE:CONTAINER[:OPTS]", summary = "bind a host path (/path, ./path; OPTS: ro, rw, rprivate, rshared, rslave, nosuid, nodev, noexec) or mount a named volume (NAME, created when missing; OPTS: ro, rw)" },
  { name = "ephemeral-storage", type = "string", metavar = "SIZE", summary = "a scratch area of SIZE at /scratch that vanishes with the container" },
  { name = "disk-limit", type = "string", metavar = "SIZE", summary = "size of the container's writable layer (image roots), e.g. 5Gi" },
  { name = "log-max-size", type = "string", metavar = "SIZE", summary = "keep at most SIZE of the container's logs, oldest dropped first (64Ki-1Ti; default: logcollector.max_size, 100Mi)" },
  { name = "log-max-age", type = "string", metavar = "DURATION", summary = "drop the container's logs older than DURATION, e.g. 7d or 1h30m (default: logcollector.max_age, none)" },
  { name = "verify", type = "string", metavar = "off|lazy|strict", summary = "check the image against its manifest at each start: strict refuses a tampered image, lazy starts at once and reports drift as an event (default: integrity.verify, off)" },
  { name = "soft-mounts", summary = "skip a volume whose host path is missing, with a warning" },
  { name = "volatile", summary = "writes go to memory and vanish at stop; the rootfs is never modified" },
  { name = "rootfs-img", type = "string", metavar = "FILE.img", summary = "boot an ext4 image (see `image create-img`) instead of IMAGE" },
  { name = "cap-add", type = "list", metavar = "CAP", summary = "add a capability (NET_ADMIN, CAP_SYS_TIME, ALL)" },
  { name = "cap-drop", type = "list", metavar = "CAP", summary = "drop a capability (ALL: every one; then --cap-add what to keep)" },
  { name = "security-opt", type = "list", metavar = "OPT", summary = "seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges=false" },
  { name = "privileged", summary = "DANGEROUS: every capability, no seccomp filter, no masked /proc and /sys paths" },
}

for _, o in ipairs(resource_options) do create_options[#create_options + 1] = o end

local spec_keys = {
  "hostname", "env", "env_file", "workdir", "user", "group_add", "read_only", "network", "publish",
  "init", "ulimit", "userns", "pid", "ipc", "uts", "sysctl", "memory", "cpus", "pids_limit", "stop_timeout", "interactive", "tty",
  "memory_reservation", "cpu_shares", "cpuset_cpus",
  "memory_swap", "memory_swappiness", "blkio_weight",
  "device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops",
  "ignore_unsupported", "runtime", "isolation", "vcpus", "vm_memory",
  "init_system", "hw_access",
  "volume", "soft_mounts", "volatile", "rootfs_img", "ephemeral_storage", "disk_limit",
  "log_max_size", "log_max_age", "verify",
  "cap_add", "cap_drop", "security_opt", "privileged",
}

local function with(extra)
  local out = {}
  for _, o in ipairs(create_options) do out[#out + 1] = o end
  for _, o in ipairs(extra or {}) do out[#out + 1] = o end
  return out
end

local cgroup_flags = {
  ["--memory"] = true, ["--memory-reservation"] = true, ["--cpus"] = true,
  ["--cpu-shares"] = true, ["--cpuset-cpus"] = true, ["--pids-limit"] = true,
  ["--memory-swap"] = true, ["--memory-swappiness"] = true, ["--blkio-weight"] = true,
  ["--device-read-bps"] = true, ["--device-write-bps"] = true,
  ["--device-read-iops"] = true, ["--device-write-iops"] = true,
}

local function providers_of(kind)
  local ok, list = pcall(mo.providers, kind)
  return ok and list or {}
end

-- A rootfs directory as podman tells it from an image: /path, ./path, ../path, . or ..
local function is_directory_arg(s)
  return s == "." or s == ".." or s:sub(1, 1) == "/" or s:sub(1, 2) == "./" or s:sub(1, 3) == "../"
end

-- What the storage service applies: named volumes and emptyDir areas, and the writable
-- layer's size of an image root.
local function storage_field(field, spec)
  if field:match("^spec%.volumes%[%d+%]%.volume$") or field:match("^spec%.volumes%[%d+%]%.emptyDir$")
     or field:match("^%-%-volume=") or field == "--ephemeral-storage" then
    return true
  end
  return spec.imageId ~= nil and (field == "--disk-limit" or field == "spec.resources.limits.storage")
end

-- The runtime spec from a spec file, the flags and the positional arguments.
local function build_spec(opts, name, target, command)
  local base = nil
  if opts.file == "-" then
    -- the spec on stdin (the API server hands a request's body this way)
    base = mo.spec.parse(io.stdin:read("*a") or "", "stdin")
  elseif opts.file then
    base = mo.spec.load(opts.file)
  end
  local o = {}
  for _, k in ipairs(spec_keys) do
    local v = opts[k]
    if v ~= nil and v ~= false and not (type(v) == "table" and #v == 0) then o[k] = v end
  end
  o.name = name
  if target then
    if is_directory_arg(target) then o.rootfs = target else o.image = target end
  end
  if command and #command > 0 then o.command = command end
  local spec = mo.spec.apply_options(base, o)
  if spec.image and not spec.rootfs and not spec.rootfsImage then
    if #providers_of("storage") == 0 then
      mo.error(string.format("image `%s`: running an image needs the storage plugin, which is "
                             .. "not installed; give a rootfs directory (/path or ./path)", spec.image))
    end
    -- the store's id and run config (Entrypoint, Cmd, Env, ...); finalize applies them
    local image = mo.plugins.storage.image_resolve{ ref = spec.image }
    if image.name and image.name ~= "" then spec.image = image.name end
    spec.imageId = image.id
    spec.imageConfig = image.config
  end
  spec = mo.spec.finalize(spec)
  if spec.unapplied and #providers_of("cgroup") > 0 then
    -- the runtime hands cpu, memory, pids and cpuset to the cgroup service
    local left = {}
    for _, field in ipairs(spec.unapplied) do
      local cgroup_field = cgroup_flags[field]
        or (field:match("^spec%.resources%.") and not field:match("storage$"))
      if not cgroup_field then left[#left + 1] = field end
    end
    spec.unapplied = left
  end
  if spec.unapplied and #providers_of("storage") > 0 then
    local left = {}
    for _, field in ipairs(spec.unapplied) do
      if not storage_field(field, spec) then left[#left + 1] = field end
    end
    spec.unapplied = left
  end
  if spec.unapplied and #providers_of("network") > 0 then
    -- the runtime hands network attachments and published ports to the network service
    local left = {}
    for _, field in ipairs(spec.unapplied) do
      local net = field:match("^%-%-network=") or field:match("^spec%.networking%.mode=")
        or field == "spec.networking.ports" or field == "--publish"
      if not net then left[#left + 1] = field end
    end
    spec.unapplied = left
  end
  if spec.unapplied and #providers_of("integrity") > 0 then
    local left = {}
    for _, field in ipairs(spec.unapplied) do
      if field ~= "spec.verify" then left[#left + 1] = field end
    end
    spec.unapplied = left
  end
  if spec.unapplied and #spec.unapplied > 0 then
    mo.warn("accepted but not applied yet: " .. table.concat(spec.unapplied, ", "))
  end
  if spec.hardwareAccess then
    mo.warn("HARDWARE ACCESS: the container gets every device of this host and can change "
            .. "them (disks, firmware-facing /sys attributes); /dev is the host's own devtmpfs")
  end
  return spec
end

-- --isolation auto: a micro-VM when the krun plugin's probe passes, else namespaces; one
-- line on stderr says which and why.
local function resolve_isolation(spec)
  if spec.isolation ~= "auto" then return end
  spec.isolation = nil
  local ok, plugin = pcall(mo.plugin_info, "krun")
  local probe = ok and type(plugin) == "table" and plugin.probe
  local usable = probe and probe.usable
  local reason = probe and probe.reason
                 or (ok and type(plugin) == "table" and plugin.error)
                 or "the krun plugin is not installed"
  local have = false
  for _, p in ipairs(mo.providers("runtime")) do have = have or p.provider == "krun" end
  if usable and have then
    spec.runtime = "krun"
    mo.eprint(string.format("isolation: micro-VM (%s)", reason))
  else
    spec.runtime = "namespace"
    spec.vm = nil
    mo.eprint(string.format("isolation: namespaces (no micro-VM: %s)", reason))
  end
end

-- The runtime service the spec asks for: its provider, or the default one.
local function runtime_for(spec)
  resolve_isolation(spec)
  if spec.runtime and spec.runtime ~= "" then
    for _, p in ipairs(mo.providers("runtime")) do
      if p.provider == spec.runtime then return mo.service("runtime", spec.runtime) end
    end
    local known, failed = {}, {}
    for _, p in ipairs(mo.providers("runtime")) do known[#known + 1] = p.provider end
    -- a plugin the loader refused (a changed file, a wrong ABI) says why
    for _, p in ipairs(mo.plugin_list()) do
      if p.state == "failed" then failed[#failed + 1] = string.format("%s: %s", p.name, p.error or "") end
    end
    mo.error(string.format("runtime `%s` is not available (installed: %s)%s", spec.runtime,
                           #known > 0 and table.concat(known, ", ") or "none",
                           #failed > 0 and ("; plugins that failed to load: " .. table.concat(failed, "; ")) or ""))
  end
  return mo.runtime
end

local function short_id(id) return id and id:sub(1, 12) or "" end

-- --verify: the spec's mode, else the configuration's.
local function verify_mode(spec)
  local mode = spec.verify
  if not mode or mode == "" then mode = mo.config("integrity.verify") end
  if not mode or mode == "" then return "off" end
  if mode ~= "off" and mode ~= "lazy" and mode ~= "strict" then
    mo.error(string.format("integrity.verify: `%s` is not one of `off`, `lazy`, `strict`", mode))
  end
  return mode
end

-- What a container starts from, as the integrity service names it (an ext4 image has no
-- manifest: `integrity check-img` checks those).
local function verify_target(spec)
  if spec.imageId then return "image:" .. spec.imageId, spec.image or spec.imageId end
  if spec.rootfs and not spec.rootfsImage then return "path:" .. spec.rootfs, spec.rootfs end
  return nil
end

local function need_integrity(mode)
  if #providers_of("integrity") > 0 then return true end
  if mode == "strict" then
    mo.error("--verify=strict needs the integrity plugin, which is not installed")
  end
  mo.warn("--verify=lazy: the integrity plugin is not installed; nothing is verified")
  return false
end

-- Before a start under --verify=strict: refuse a root that differs from its manifest,
-- naming the first differences. Returns the mode.
local function verify_strict(spec, name)
  local mode = verify_mode(spec)
  local target, what = verify_target(spec)
  if mode ~= "strict" or not target or not need_integrity(mode) then return mode end
  local r = mo.integrity.verify(target, { first = 5 })
  if not r.clean then
    mo.error(string.format("refusing to start `%s`: `%s` differs from its manifest (%d %s): %s; "
                           .. "see `mobileops integrity verify %s`", name or "?", what, r.problems,
                           r.problems == 1 and "difference" or "differences",
                           table.concat(r.first, ", "), what))
  end
  return mode
end

-- Under --verify=lazy: a verification in a process of its own; drift becomes an
-- integrity.drift event (and a warning on a terminal).
local function verify_lazy(spec, mode, id, name)
  local target = verify_target(spec)
  if mode ~= "lazy" or not target or not need_integrity(mode) then return end
  mo.plugins.integrity.verify_background{ target = target, container = id or "", name = name or "" }
end

local function print_state(state)
  if mo.json then return mo.output(state) end
  mo.print(state.name or short_id(state.id))
end

local image_arg = { name = "IMAGE", summary = "image name or id, or a root filesystem directory (/path, ./path); or spec.image / spec.rootfs in -f; none with --rootfs-img", optional = true, unless = "rootfs-img" }

local create_args = {
  { name = "NAME", summary = "unique container name" },
  image_arg,
  { name = "CMD", summary = "command and arguments (after an image's Entrypoint; default: its Cmd)", variadic = true, optional = true },
}

local ref_arg = { { name = "NAME", summary = "container name or id" } }

wf:verb{
  name = "create",
  summary = "Create a container (it does not start)",
  options = create_options,
  args = create_args,
  run = function(opts, args)
    local spec = build_spec(opts, args.NAME, args.IMAGE, args.CMD)
    print_state(runtime_for(spec).create(spec))
  end,
}

wf:verb{
  name = "start",
  summary = "Start a created or stopped container in the background",
  args = ref_arg,
  run = function(_, args)
    local state = mo.runtime.state(args.NAME)
    local mode = verify_strict(state.spec or {}, state.name)
    mo.runtime.start(args.NAME)
    verify_lazy(state.spec or {}, mode, state.id, state.name)
  end,
}

wf:verb{
  name = "boot",
  summary = "Create and start a container in the background",
  options = create_options,
  args = create_args,
  run = function(opts, args)
    local spec = build_spec(opts, args.NAME, args.IMAGE, args.CMD)
    local mode = verify_strict(spec, args.NAME)
    local rt = runtime_for(spec)
    local state = rt.create(spec)
    local ok, err = pcall(rt.start, state.id)
    if not ok then
      pcall(rt.remove, state.id, true)
      error(err, 0)
    end
    verify_lazy(spec, mode, state.id, state.name)
    print_state(state)
  end,
}

wf:verb{
  name = "run",
  summary = "Run a container in the foreground; exits with its exit status",
  options = with{
    { name = "name", type = "string", summary = "container name (default: generated)" },
    { name = "rm", summary = "delete the container when it exits" },
    { name = "interactive", short = "i", summary = "keep stdin open" },
    { name = "tty", short = "t", summary = "allocate a terminal" },
  },
  args = { image_arg,
           { name = "CMD", summary = "command and arguments (after an image's Entrypoint; default: its Cmd)", variadic = true, optional = true } },
  run = function(opts, args)
    local spec = build_spec(opts, opts.name, args.IMAGE, args.CMD)
    local mode = verify_strict(spec, spec.name)
    -- before the container exists: its name (or the image, unnamed) stands for it
    verify_lazy(spec, mode, nil, spec.name or ("a run of " .. tostring(spec.image or spec.rootfs)))
    return runtime_for(spec).run(spec, { rm = opts.rm, tty = opts.tty, interactive = opts.interactive })
  end,
}

wf:verb{
  name = "stop",
  summary = "Stop a container: SIGTERM, then SIGKILL after the timeout",
  options = { { name = "time", short = "t", type = "int", metavar = "SECONDS", summary = "seconds before SIGKILL (default: the container's stop timeout, 10)" } },
  args = ref_arg,
  run = function(opts, args) mo.runtime.stop(args.NAME, opts.time) end,
}

wf:verb{
  name = "restart",
  summary = "Stop a container if it runs, then start it again",
  options = { { name = "time", short = "t", type = "int", metavar = "SECONDS", summary = "seconds before SIGKILL" } },
  args = ref_arg,
  run = function(opts, args)
    local state = mo.runtime.state(args.NAME)
    if state.status == "running" or state.status == "paused" then mo.runtime.stop(args.NAME, opts.time) end
    local mode = verify_strict(state.spec or {}, state.name)
    mo.runtime.start(args.NAME)
    verify_lazy(state.spec or {}, mode, state.id, state.name)
  end,
}

wf:verb{
  name = "kill",
  summary = "Send a signal to a container",
  options = { { name = "signal", short = "s", type = "string", metavar = "SIG", default = "KILL", summary = "signal name or number (default KILL)" },
              { name = "all", short = "a", summary = "signal every process, not only the init" } },
  args = ref_arg,
  run = function(opts, args) mo.runtime.kill(args.NAME, mo.signal(opts.signal), opts.all) end,
}

wf:verb{
  name = "delete",
  summary = "Delete a container and everything it holds",
  options = { { name = "force", short = "f", summary = "kill it first if it runs" } },
  args = { { name = "NAME", summary = "container name or id" },
           { name = "MORE", summary = "more containers", variadic = true, optional = true } },
  run = function(opts, args)
    return mo.each(args.NAME, args.MORE, function(n)
      local ok, state = pcall(mo.runtime.state, n)
      mo.runtime.remove(n, opts.force)
      if ok and type(state) == "table" and state.spec and state.spec.imageId then
        -- its snapshots go with it (they are of its writable layer)
        local removed, why = pcall(mo.plugins.storage.container_snapshot_rm, { container = state.id })
        if not removed then mo.warn("snapshots of " .. n .. " are left: " .. tostring(why)) end
      end
    end)
  end,
}

wf:verb{
  name = "list",
  summary = "List containers",
  options = { { name = "all", short = "a", summary = "include stopped containers" } },
  run = function(opts)
    local list = mo.runtime.list(opts.all)
    mo.output(mo.array(list), {
      { key = "name" },
      { key = "id", format = short_id },
      { key = "image", title = "ROOTFS/IMAGE", format = function(v, row) return (v and v ~= "") and v or row.rootfs or "" end },
      { key = "status" },
      { key = "pid", format = function(v) return (v and v > 0) and tostring(v) or "" end },
      { key = "created" },
      { key = "exit_code", title = "EXIT", format = function(v, row)
          if row.status ~= "stopped" or not v then return "" end
          return row.oom_killed and (tostring(v) .. " (OOMKilled)") or tostring(v) end },
    })
  end,
}

wf:verb{
  name = "inspect",
  summary = "Show everything known about a container (JSON)",
  args = ref_arg,
  run = function(_, args) mo.print(mo.json_encode(mo.runtime.state(args.NAME), true)) end,
}

wf:verb{
  name = "exec",
  summary = "Run a command in a running container",
  options = {
    { name = "interactive", short = "i", summary = "keep stdin open" },
    { name = "tty", short = "t", summary = "allocate a terminal" },
    { name = "user", short = "u", type = "string", metavar = "UID[:GID]", summary = "run as this user" },
    { name = "env", short = "e", type = "list", metavar = "K=V", summary = "set an environment variable" },
    { name = "workdir", short = "w", type = "string", metavar = "DIR", summary = "working directory" },
    { name = "cap-add", type = "list", metavar = "CAP", summary = "a capability on top of the container's" },
    { name = "privileged", summary = "every capability (the container's seccomp filter stays)" },
  },
  args = { { name = "NAME", summary = "container name or id" },
           { name = "CMD", summary = "command and arguments", variadic = true } },
  run = function(opts, args)
    local process = { args = args.CMD, terminal = opts.tty }
    if opts.privileged or #opts.cap_add > 0 then
      process.security = { privileged = opts.privileged or nil,
                           capabilities = #opts.cap_add > 0 and { add = opts.cap_add } or nil }
    end
    if #opts.env > 0 then process.env = opts.env end
    if opts.workdir then process.cwd = opts.workdir end
    if opts.user then process.user = opts.user end
    return mo.runtime.exec(args.NAME, process, { tty = opts.tty, interactive = opts.interactive })
  end,
}

wf:verb{
  name = "attach",
  summary = "Follow a running container's output until it exits",
  args = ref_arg,
  run = function(_, args) mo.runtime.attach(args.NAME) end,
}

wf:verb{
  name = "top",
  summary = "Show a container's processes",
  args = ref_arg,
  run = function(_, args)
    mo.output(mo.array(mo.runtime.top(args.NAME)), {
      { key = "pid" }, { key = "ppid" }, { key = "user" }, { key = "state" }, { key = "command" },
    })
  end,
}

wf:verb{
  name = "pause",
  summary = "Freeze every process of a container",
  args = ref_arg,
  run = function(_, args) mo.runtime.pause(args.NAME) end,
}

wf:verb{
  name = "resume",
  summary = "Thaw a paused container",
  args = ref_arg,
  run = function(_, args) mo.runtime.resume(args.NAME) end,
}

wf:verb{
  name = "update",
  summary = "Change the resource limits of a running container",
  options = resource_options,
  args = ref_arg,
  run = function(opts, args)
    local o, given = {}, false
    for _, k in ipairs(resource_keys) do
      local v = opts[k]
      if v ~= nil and v ~= false and not (type(v) == "table" and #v == 0) then
        o[k] = v
        given = given or k ~= "ignore_unsupported"
      end
    end
    if not given then mo.error("update: give at least one resource option; see `mobileops container update --help`") end
    local spec = mo.spec.apply_options(nil, o)
    mo.runtime.update(args.NAME, spec.resources or {})
  end,
}

local function human(bytes) return (bytes and bytes >= 0) and mo.bytes(bytes) or "--" end

-- One row of `stats`: CPU % from two usage samples `dt` seconds apart.
local function stats_row(before, after, dt)
  local cpu = after.cpu or {}
  local mem = after.memory or {}
  local pct = 0
  if before and before.cpu and cpu.usage_ns and dt > 0 then
    pct = (cpu.usage_ns - before.cpu.usage_ns) / (dt * 1e9) * 100
  end
  local limit = mem.limit
  return {
    name = after.name, id = after.id,
    cpu_percent = math.floor(pct * 100 + 0.5) / 100,
    memory_usage = mem.current, memory_limit = limit, memory_peak = mem.peak,
    memory_percent = (limit and limit > 0 and mem.current) and math.floor(mem.current / limit * 10000 + 0.5) / 100 or mo.null,
    pids = (after.pids or {}).current,
    block_read = (after.io or {}).read_bytes, block_write = (after.io or {}).write_bytes,
    oom_kills = mem.oom_kills,
  }
end

wf:verb{
  name = "stats",
  summary = "Live resource usage (CPU %, memory, pids, block I/O)",
  options = { { name = "no-stream", summary = "print one sample and exit" },
              { name = "all", short = "a", summary = "include stopped containers (shown empty)" } },
  args = { { name = "NAME", summary = "containers (default: all running)", variadic = true, optional = true } },
  run = function(opts, args)
    local names = args.NAME
    if #names == 0 then
      for _, c in ipairs(mo.runtime.list(false)) do
        if c.status == "running" or c.status == "paused" then names[#names + 1] = c.name end
      end
    end
    local stream = not opts.no_stream and not mo.json and mo.isatty(1)
    local function sample()
      local out = {}
      for _, n in ipairs(names) do
        local ok, s = pcall(mo.runtime.stats, n)
        if ok then out[n] = s elseif #args.NAME > 0 then error(s, 0) end
      end
      return out
    end
    local columns = {
      { key = "name" }, { key = "cpu_percent", title = "CPU %" },
      { key = "memory_usage", title = "MEM USAGE / LIMIT", format = function(v, r)
          return human(v) .. " / " .. (r.memory_limit and r.memory_limit < 2^62 and human(r.memory_limit) or "unlimited") end },
      { key = "memory_percent", title = "MEM %" }, { key = "pids" },
      { key = "block_read", title = "BLOCK I/O", format = function(v, r) return human(v) .. " / " .. human(r.block_write) end },
    }
    local before, t0 = sample(), mo.now()
    repeat
      mo.sleep(stream and 1 or 0.5)
      local after, t1 = sample(), mo.now()
      local rows = mo.array()
      for _, n in ipairs(names) do
        if after[n] then rows[#rows + 1] = stats_row(before[n], after[n], t1 - t0) end
      end
      if stream then io.write("\27[H\27[J") end
      mo.output(rows, columns)
      io.stdout:flush()
      before, t0 = after, t1
    until not stream
  end,
}

local snapshot_columns = {
  { key = "snapshot" },
  { key = "created" },
  { key = "size", format = function(v) return human(v) end },
  { key = "sha256", format = function(v) return v and v:sub(8, 19) or "" end },
}

wf:verb{
  name = "snapshot",
  summary = "Save a container's writable layer (what it changed in its image) as a snapshot",
  args = { { name = "NAME", summary = "container name or id (one that runs from an image)" },
           { name = "SNAP", summary = "snapshot name (default: the UTC time, 20261122T200000Z)", optional = true } },
  run = function(_, args)
    local state = mo.runtime.state(args.NAME)
    -- a running container is frozen while its layer is read, so the copy is consistent
    local paused = false
    if state.status == "running" then
      paused = pcall(mo.runtime.pause, state.id)
      if not paused then
        mo.warn("container " .. args.NAME .. " runs and cannot be paused (no cgroup service): "
                .. "files it writes meanwhile may be inconsistent in the snapshot")
      end
    end
    local ok, snap = pcall(mo.plugins.storage.container_snapshot, { container = state.id, snapshot = args.SNAP })
    if paused then mo.runtime.resume(state.id) end
    if not ok then error(snap, 0) end
    if mo.json then return mo.output(snap) end
    mo.print(snap.snapshot)
  end,
}

wf:verb{
  name = "restore",
  summary = "Put a snapshot back as a stopped container's writable layer",
  args = { { name = "NAME", summary = "container name or id" },
           { name = "SNAP", summary = "snapshot name (see `container snapshots NAME`)" } },
  run = function(_, args)
    local state = mo.runtime.state(args.NAME)
    if state.status == "running" or state.status == "paused" then
      mo.error(string.format("restore snapshot `%s` of `%s`: the container is running: stop it first",
                             args.SNAP, args.NAME))
    end
    local out = mo.plugins.storage.container_restore{ container = state.id, snapshot = args.SNAP }
    if mo.json then return mo.output(out) end
  end,
}

wf:verb{
  name = "snapshots",
  summary = "List a container's snapshots",
  args = { { name = "NAME", summary = "container name or id" } },
  run = function(_, args)
    local state = mo.runtime.state(args.NAME)
    local list = mo.plugins.storage.container_snapshots{ container = state.id }
    mo.output(mo.array(list), snapshot_columns)
  end,
}

wf:verb{
  name = "wait",
  summary = "Wait until a container stops; exits with its exit status",
  args = ref_arg,
  run = function(_, args) return mo.runtime.wait(args.NAME) end,
}

return wf
