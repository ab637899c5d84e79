-- mobileops oci (and mobileops-runc): an OCI runtime with runc's command line, for podman
-- (conmon), containerd (containerd-shim-runc-v2) and Kubernetes. The global options
-- (--root, --log, --log-format, ...) are read before the command by the dispatcher
-- (tools/mobileops/Oci.cpp); see docs/oci.md.
local mo = require("mobileops")

local wf = mo.workflow{
  name = "oci",
  summary = "OCI runtime command line (runc's): what podman and containerd run",
  description = "Run as `mobileops-runc [--root DIR] [--log FILE] [--log-format json] COMMAND` "
    .. "(or `mobileops oci ...`). Containers live in the state store under --root; an ID is a "
    .. "container name. See docs/oci.md.",
}

local E_NOT_FOUND = -1001

local function message_of(err)
  if type(err) == "table" then return err.message or tostring(err) end
  return tostring(err)
end

local function check_id(id)
  if #id > 128 or not id:match("^[%w][%w_.%-]*$") then
    mo.error(string.format("invalid container id `%s`: expected 1 to 128 letters, digits, `_`, "
                           .. "`.`, `-`, starting with a letter or digit", id))
  end
end

-- The record of ID, or runc's "does not exist" error (engines match that text).
local function record(id)
  local ok, st = pcall(mo.runtime.state, id)
  if ok then return st end
  if type(st) == "table" and st.code == E_NOT_FOUND then
    mo.error(string.format("container `%s` does not exist", id))
  end
  error(st, 0)
end

-- The runtime service a container was made by (`run.oci.handler: krun` -> krun).
local function runtime_of(spec)
  local name = spec and spec.runtime
  if name and name ~= "" and name ~= "namespace" then return mo.service("runtime", name) end
  return mo.runtime
end

-- Written as runc does: a temporary file renamed over the target, so a reader never sees
-- a partial pid.
local function write_pid_file(path, pid)
  if not path or path == "" then return end
  local tmp = path .. ".mobileops-tmp"
  local f, err = io.open(tmp, "w")
  if not f then mo.error(string.format("pid file `%s`: %s", path, err)) end
  f:write(tostring(pid))
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then
    os.remove(tmp)
    mo.error(string.format("pid file `%s`: %s", path, rerr))
  end
end

local function read_file(path, what)
  if path == "-" then return io.stdin:read("*a") end
  local f, err = io.open(path, "r")
  if not f then mo.error(string.format("%s `%s`: %s", what, path, err)) end
  local text = f:read("*a")
  f:close()
  return text
end

-- Whether the runtime provider implements runc's model (create launches the init, held
-- until start; stdio and pid files are the caller's): the `nsruntime.oci` feature.
-- A container made that way has a pid from create on and no monitor.
local function runc_model(st)
  if st and st.spec and st.spec.oci and st.pid and st.pid > 0
     and (not st.monitor_pid or st.monitor_pid == 0) then
    return true
  end
  local ok, has = pcall(mo.has, "nsruntime.oci")
  return ok and has
end

-- OCI status: our paused is runc's paused too; the rest are the same words.
local function oci_state(st)
  local spec = st.spec or {}
  local oci = spec.oci or {}
  local live = st.status == "running" or st.status == "paused" or st.status == "created"
  return {
    ociVersion = "1.1.0",
    id = st.name,
    pid = live and st.pid or 0,
    status = st.status,
    bundle = oci.bundle or "",
    rootfs = spec.rootfs or st.rootfs or "",
    created = st.created,
    owner = "",
    annotations = spec.annotations or {},
  }
end

-- The runtime spec of a bundle, named ID, with the caller's pid file and console socket.
local function bundle_spec(opts, id)
  check_id(id)
  local bundle = mo.abspath(opts.bundle or ".")
  local spec = mo.spec.from_oci(bundle)
  spec.name = id
  -- runc sets a hostname only when config.json gives one, and a new UTS namespace starts
  -- with the host's: containerd's sandbox of a pod on the host's network gives none, and
  -- its containers (joining that UTS namespace) must see the node's name, not the id.
  -- The host's own UTS namespace (config.json leaves it out) keeps its name untouched.
  local host_uts = type(spec.namespaces) == "table" and spec.namespaces.uts == false
  if (not spec.hostname or spec.hostname == "") and not host_uts then
    local f = io.open("/proc/sys/kernel/hostname", "r")
    local host = f and f:read("*l")
    if f then f:close() end
    if host and host ~= "" then spec.hostname = host end
  end
  spec.oci.pidFile = opts.pid_file and mo.abspath(opts.pid_file) or nil
  spec.oci.consoleSocket = opts.console_socket and mo.abspath(opts.console_socket) or nil
  if spec.cgroupsPath and spec.cgroupsPath:find(":") and not spec.cgroupsPath:match("^/") then
    mo.error(string.format("linux.cgroupsPath `%s` is a systemd slice path: this runtime manages "
                           .. "cgroups by path (configure the engine for cgroupfs)", spec.cgroupsPath))
  end
  -- what the runtime provider does not take yet: refused where ignoring it would change
  -- what the container is, listed otherwise
  if spec.namespacePaths and not mo.has("nsruntime.namespace-paths") then
    local types = {}
    for t in pairs(spec.namespacePaths) do types[#types + 1] = t end
    table.sort(types)
    mo.error(string.format("config.json: linux.namespaces: joining a namespace by path (%s) is "
                           .. "not supported by the runtime yet", table.concat(types, ", ")))
  end
  if spec.process and spec.process.umask and not mo.has("nsruntime.umask") then
    -- the container inherits the caller's umask; engines ask for 0022, the usual one
    if spec.process.umask ~= 18 then
      spec.unapplied = spec.unapplied or {}
      spec.unapplied[#spec.unapplied + 1] = "process.user.umask (the caller's is kept)"
    end
    spec.process.umask = nil
  end
  spec = mo.spec.finalize(spec)
  if spec.unapplied and #spec.unapplied > 0 then
    mo.warn("accepted but not applied: " .. table.concat(spec.unapplied, ", "))
  end
  spec.unapplied = nil
  return spec
end

local create_options = {
  { name = "bundle", short = "b", type = "string", metavar = "DIR", summary = "the bundle: config.json and the root (default: the working directory)" },
  { name = "pid-file", type = "string", metavar = "FILE", summary = "write the container's init pid to FILE" },
  { name = "console-socket", type = "string", metavar = "SOCKET", summary = "send the master of the container's terminal to this unix socket (process.terminal)" },
  { name = "no-pivot", summary = "accepted; the root is always entered with pivot_root" },
  { name = "no-new-keyring", summary = "accepted; no session keyring is made" },
  { name = "preserve-fds", type = "int", metavar = "N", summary = "refused unless 0: passing extra fds is not supported" },
}

local id_arg = { { name = "ID", summary = "container id" } }

local function refuse_preserve_fds(opts)
  if opts.preserve_fds and opts.preserve_fds ~= 0 then
    mo.error("--preserve-fds: passing extra file descriptors is not supported")
  end
end

wf:verb{
  name = "create",
  summary = "Create a container from a bundle (its init is held until `start`)",
  options = create_options,
  args = id_arg,
  run = function(opts, args)
    refuse_preserve_fds(opts)
    local spec = bundle_spec(opts, args.ID)
    local rt = runtime_of(spec)
    local st = rt.create(spec)
    -- a runtime without runc's model launches the init at start: the pid file waits
    if st.pid and st.pid > 0 and spec.oci.pidFile then
      local f = io.open(spec.oci.pidFile, "r")
      if f then f:close() else write_pid_file(spec.oci.pidFile, st.pid) end
    end
  end,
}

wf:verb{
  name = "start",
  summary = "Start a created container's process",
  args = id_arg,
  run = function(_, args)
    local st = record(args.ID)
    if st.status ~= "created" then
      mo.error(string.format("cannot start a container that is %s (`%s`)", st.status, args.ID))
    end
    local spec = st.spec or {}
    runtime_of(spec).start(st.id)
    local oci = spec.oci or {}
    if oci.pidFile and not runc_model(st) then
      write_pid_file(oci.pidFile, mo.runtime.state(st.id).pid)
    end
  end,
}

wf:verb{
  name = "run",
  summary = "Create and start a container; without --detach wait for it and exit with its status",
  options = {
    create_options[1], create_options[2], create_options[3], create_options[4], create_options[5],
    create_options[6],
    { name = "detach", short = "d", summary = "return once it started" },
    { name = "keep", summary = "keep the container after it exits (run without --detach)" },
  },
  args = id_arg,
  run = function(opts, args)
    refuse_preserve_fds(opts)
    local spec = bundle_spec(opts, args.ID)
    local rt = runtime_of(spec)
    if opts.detach then
      local st = rt.create(spec)
      local ok, err = pcall(rt.start, st.id)
      if not ok then
        pcall(rt.remove, st.id, true)
        error(err, 0)
      end
      if spec.oci.pidFile then write_pid_file(spec.oci.pidFile, rt.state(st.id).pid) end
      return 0
    end
    -- in the foreground on this process's stdio under the runtime's own run: the
    -- container's exit status is ours
    spec.oci = nil
    return rt.run(spec, { rm = not opts.keep, tty = spec.process and spec.process.terminal })
  end,
}

wf:verb{
  name = "state",
  summary = "Print a container's state as JSON (OCI runtime spec)",
  args = id_arg,
  run = function(_, args) mo.print(mo.json_encode(oci_state(record(args.ID)), true)) end,
}

wf:verb{
  name = "kill",
  summary = "Send a signal (default TERM) to a container's init, or with --all to every process",
  options = { { name = "all", short = "a", summary = "every process of the container" } },
  args = { { name = "ID", summary = "container id" },
           { name = "SIGNAL", summary = "name (TERM, SIGKILL) or number; default TERM", optional = true } },
  run = function(opts, args)
    local st = record(args.ID)
    local sig = mo.signal(args.SIGNAL or "TERM")
    if st.status == "stopped" then
      mo.error(string.format("container `%s`: container not running", args.ID))
    end
    runtime_of(st.spec).kill(st.id, sig, opts.all)
  end,
}

wf:verb{
  name = "delete",
  summary = "Delete a stopped container (--force: also a running one; an unknown id is not an error)",
  options = { { name = "force", short = "f", summary = "kill it first; an unknown id is fine" } },
  args = id_arg,
  run = function(opts, args)
    local ok, st = pcall(mo.runtime.state, args.ID)
    if not ok then
      if type(st) == "table" and st.code == E_NOT_FOUND then
        if opts.force then return 0 end
        mo.error(string.format("container `%s` does not exist", args.ID))
      end
      error(st, 0)
    end
    if not opts.force and (st.status == "running" or st.status == "paused") then
      mo.error(string.format("cannot delete container `%s` that is not stopped: %s", args.ID, st.status))
    end
    runtime_of(st.spec).remove(st.id, opts.force or st.status == "created")
  end,
}

-- An OCI process (exec --process FILE) as the runtime's exec process.
local function exec_process(opts, args, id)
  local p
  if opts.process then
    p = mo.json_decode(read_file(mo.abspath(opts.process), "process file"))
    if type(p) ~= "table" then mo.error("process file: expected a JSON object") end
  else
    if not args.CMD or #args.CMD == 0 then mo.error("exec: give a command or --process FILE") end
    p = { args = args.CMD, cwd = opts.cwd, terminal = opts.tty }
    if opts.env and #opts.env > 0 then p.env = opts.env end
    if opts.user then
      local u, g = opts.user:match("^(%d+):?(%d*)$")
      if not u then mo.error(string.format("invalid --user `%s`: expected UID[:GID]", opts.user)) end
      p.user = { uid = tonumber(u), gid = tonumber(g ~= "" and g or "0") }
    end
  end
  if type(p.args) ~= "table" or #p.args == 0 then mo.error("process.args: no command given") end
  local out = { args = p.args, env = p.env, cwd = p.cwd, terminal = p.terminal or opts.tty or false }
  if type(p.user) == "table" then
    out.user = { uid = p.user.uid or 0, gid = p.user.gid or 0, additionalGids = p.user.additionalGids }
  end
  if p.capabilities or p.noNewPrivileges ~= nil then
    out.security = { noNewPrivileges = p.noNewPrivileges }
  end
  if opts.detach then
    out.detach = true
    out.pidFile = opts.pid_file and mo.abspath(opts.pid_file) or nil
    out.consoleSocket = opts.console_socket and mo.abspath(opts.console_socket) or nil
  end
  return out
end

wf:verb{
  name = "exec",
  summary = "Run a process in a running container",
  options = {
    { name = "process", short = "p", type = "string", metavar = "FILE", summary = "the process as OCI JSON (args, env, cwd, user, terminal)" },
    { name = "detach", short = "d", summary = "do not wait for it" },
    { name = "pid-file", type = "string", metavar = "FILE", summary = "write its pid to FILE" },
    { name = "console-socket", type = "string", metavar = "SOCKET", summary = "send its terminal's master to this socket" },
    { name = "tty", short = "t", summary = "allocate a terminal" },
    { name = "cwd", type = "string", metavar = "DIR", summary = "working directory" },
    { name = "env", short = "e", type = "list", metavar = "K=V", summary = "environment variable" },
    { name = "user", short = "u", type = "string", metavar = "UID[:GID]", summary = "user" },
    { name = "preserve-fds", type = "int", metavar = "N", summary = "refused unless 0" },
  },
  args = { { name = "ID", summary = "container id" },
           { name = "CMD", summary = "command and arguments (without --process)", variadic = true, optional = true } },
  run = function(opts, args)
    refuse_preserve_fds(opts)
    local st = record(args.ID)
    if st.status ~= "running" then
      mo.error(string.format("cannot exec in a container that is %s (`%s`)", st.status, args.ID))
    end
    local p = exec_process(opts, args, args.ID)
    if p.detach and not runc_model(st) then
      mo.error("exec --detach: the runtime provider cannot detach an exec yet (it needs the "
               .. "`nsruntime.oci` feature)")
    end
    local status = runtime_of(st.spec).exec(st.id, p, { tty = p.terminal, interactive = not p.detach })
    -- a detached exec answers its pid, which the pid file has
    if p.detach then return 0 end
    return status
  end,
}

wf:verb{
  name = "ps",
  summary = "List a container's processes",
  options = { { name = "format", short = "f", type = "string", default = "table", metavar = "table|json", summary = "output form" } },
  args = id_arg,
  run = function(opts, args)
    local st = record(args.ID)
    local procs = runtime_of(st.spec).top(st.id)
    if opts.format == "json" then
      local pids = {}
      for _, p in ipairs(procs) do pids[#pids + 1] = p.pid end
      return mo.print(mo.json_encode(mo.array(pids)))
    elseif opts.format ~= "table" then
      mo.error(string.format("invalid --format `%s`: expected table or json", opts.format))
    end
    mo.table(procs, { { title = "UID", key = "user" }, { title = "PID", key = "pid" }, { title = "PPID", key = "ppid" }, { title = "STAT", key = "state" }, { title = "CMD", key = "command" } })
  end,
}

wf:verb{
  name = "pause",
  summary = "Freeze every process of a container",
  args = id_arg,
  run = function(_, args) local st = record(args.ID); runtime_of(st.spec).pause(st.id) end,
}

wf:verb{
  name = "resume",
  summary = "Thaw a paused container",
  args = id_arg,
  run = function(_, args) local st = record(args.ID); runtime_of(st.spec).resume(st.id) end,
}

wf:verb{
  name = "update",
  summary = "Change a running container's resources (OCI LinuxResources JSON)",
  options = { { name = "resources", short = "r", type = "string", metavar = "FILE|-", summary = "the resources, `-` for stdin" } },
  args = id_arg,
  run = function(opts, args)
    local st = record(args.ID)
    if not opts.resources then mo.error("update: --resources FILE (or -) is required") end
    local path = opts.resources == "-" and "-" or mo.abspath(opts.resources)
    local res = mo.spec.oci_resources(read_file(path, "resources file"))
    runtime_of(st.spec).update(st.id, res)
  end,
}

wf:verb{
  name = "list",
  summary = "List the containers of this --root",
  options = { { name = "format", short = "f", type = "string", default = "table", metavar = "table|json", summary = "output form" },
              { name = "quiet", short = "q", summary = "ids only" } },
  run = function(opts)
    local out = {}
    for _, st in ipairs(mo.runtime.list(true)) do out[#out + 1] = oci_state(st) end
    if opts.quiet then
      for _, s in ipairs(out) do mo.print(s.id) end
    elseif opts.format == "json" then
      mo.print(mo.json_encode(mo.array(out)))
    else
      mo.table(out, { { title = "ID", key = "id" }, { title = "PID", key = "pid" }, { title = "STATUS", key = "status" }, { title = "BUNDLE", key = "bundle" }, { title = "CREATED", key = "created" }, { title = "OWNER", key = "owner" } })
    end
  end,
}

wf:verb{
  name = "features",
  summary = "What this runtime implements, as JSON (OCI runtime spec features.md)",
  run = function()
    local caps = {
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
      "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
      "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
      "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
      "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
      "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
      "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
      "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
      "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    }
    local model = runc_model()
    local f = {
      ociVersionMin = "1.0.0",
      ociVersionMax = "1.1.0",
      hooks = mo.array(model and { "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop" } or {}),
      mountOptions = mo.array{ "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev",
        "noexec", "exec", "sync", "async", "dirsync", "noatime", "atime", "nodiratime",
        "diratime", "relatime", "norelatime", "strictatime", "private", "rprivate", "shared",
        "rshared", "slave", "rslave", "unbindable", "runbindable", "defaults" },
      linux = {
        namespaces = mo.array{ "cgroup", "ipc", "mount", "network", "pid", "user", "uts" },
        capabilities = mo.array(caps),
        cgroup = { v1 = true, v2 = true, systemd = false, systemdUser = false },
        seccomp = {
          enabled = true,
          actions = mo.array{ "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP" },
          operators = mo.array{ "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
            "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE" },
          archs = mo.array{ "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM" },
        },
        apparmor = { enabled = false },
        selinux = { enabled = false },
      },
      annotations = { ["org.opencontainers.runc.checkpoint.enabled"] = "false",
                      ["io.github.mobileops.runc-model"] = model and "true" or "false" },
    }
    mo.print(mo.json_encode(f, true))
  end,
}

wf:verb{
  name = "spec",
  summary = "Write a default config.json (runc's, running sh) into the bundle",
  options = { { name = "bundle", short = "b", type = "string", metavar = "DIR", summary = "where (default: the working directory)" },
              { name = "rootless", summary = "a user namespace mapping this user to root" } },
  run = function(opts)
    local path = mo.abspath((opts.bundle or ".") .. "/config.json")
    local f = io.open(path, "r")
    if f then
      f:close()
      mo.error(string.format("`%s` exists: remove it first", path))
    end
    local out, err = io.open(path, "w")
    if not out then mo.error(string.format("`%s`: %s", path, err)) end
    out:write(mo.json_encode(mo.spec.default_oci(opts.rootless), true), "\n")
    out:close()
  end,
}

return wf
