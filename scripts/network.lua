-- mobileops network: bridge networks for containers (the bridge plugin): their own
-- addresses from an allocator in the state store, names through generated hosts files,
-- outbound NAT, isolation between networks and published ports in an nftables table of
-- our own. docs/networks.md describes it all.
local mo = require("mobileops")
local bridge = mo.plugins.bridge

local wf = mo.workflow{
  name = "network",
  summary = "Create and manage container networks (bridges, addresses, NAT, names)",
  description = "Containers join a network with `container create --network NAME` (`bridge` is the default network, mobileops0) or `network connect`; they reach each other by container name.",
}

local name_arg = { { name = "NAME", summary = "network name" } }

local function show(net)
  if mo.json then return mo.output(net) end
  mo.print(net.name)
end

wf:verb{
  name = "create",
  summary = "Create a network: a bridge with a subnet and a gateway",
  options = {
    { name = "subnet", type = "list", metavar = "CIDR", summary = "subnet, e.g. 172.20.0.0/16 (default: the first free 10.91.N.0/24); give one IPv4 and one IPv6 for both" },
    { name = "gateway", type = "list", metavar = "IP", summary = "the bridge's address in the subnet (default: its first host)" },
    { name = "internal", summary = "no route out: containers reach only each other" },
    { name = "ipv6", summary = "also an IPv6 subnet (default: the first free fd00:6d6f:N::/64)" },
    { name = "label", type = "list", metavar = "K=V", summary = "a label to record with the network" },
  },
  args = name_arg,
  run = function(opts, args)
    local labels = {}
    for _, kv in ipairs(opts.label or {}) do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then mo.error("invalid --label `" .. kv .. "`: expected KEY=VALUE") end
      labels[k] = v
    end
    show(bridge.network_create{ name = args.NAME, subnet = opts.subnet, gateway = opts.gateway,
                                internal = opts.internal, ipv6 = opts.ipv6, labels = labels })
  end,
}

wf:verb{
  name = "bridge",
  summary = "Create a network from its gateway address with prefix (172.20.0.1/16)",
  args = { { name = "NAME", summary = "network name" }, { name = "ADDRESS", summary = "the bridge's address with the prefix" } },
  run = function(_, args)
    local ip, prefix = args.ADDRESS:match("^(.+)/(%d+)$")
    if not ip then mo.error("invalid address `" .. args.ADDRESS .. "`: expected IP/PREFIX such as 172.20.0.1/16") end
    show(bridge.network_create{ name = args.NAME, subnet = { args.ADDRESS }, gateway = { ip } })
  end,
}

wf:verb{
  name = "list",
  summary = "List networks",
  run = function()
    mo.output(mo.array(bridge.network_list()), {
      { key = "name" },
      { key = "bridge" },
      { key = "subnets", format = function(v) return table.concat(v or {}, ",") end },
      { key = "internal", format = function(v) return v and "yes" or "no" end },
      { key = "containers", format = function(v) return tostring(#(v or {})) end },
    })
  end,
}

wf:verb{
  name = "inspect",
  summary = "Show a network: subnets, gateways, bridge, containers and their addresses (JSON)",
  args = name_arg,
  run = function(_, args) mo.print(mo.json_encode(bridge.network_inspect{ name = args.NAME }, true)) end,
}

wf:verb{
  name = "rm",
  summary = "Remove networks, their bridges and rules",
  options = { { name = "force", short = "f", summary = "disconnect the containers still on it first" } },
  args = { { name = "NAME", summary = "network name" },
           { name = "MORE", summary = "more networks", variadic = true, optional = true } },
  run = function(opts, args)
    return mo.each(args.NAME, args.MORE, function(n) bridge.network_rm{ name = n, force = opts.force } end)
  end,
}

wf:verb{
  name = "prune",
  summary = "Remove every network no container is on (not the default one)",
  run = function()
    local r = bridge.network_prune()
    if mo.json then return mo.output(r) end
    for _, n in ipairs(r.removed) do mo.print(n) end
  end,
}

wf:verb{
  name = "connect",
  summary = "Put a running container on one more network",
  options = {
    { name = "ip", type = "string", metavar = "IP", summary = "this address (default: the next free one)" },
    { name = "alias", type = "list", metavar = "NAME", summary = "another name for it on this network" },
  },
  args = { { name = "NETWORK", summary = "network name" }, { name = "CONTAINER", summary = "container name or id" } },
  run = function(opts, args)
    local r = bridge.network_connect{ network = args.NETWORK, container = args.CONTAINER, ip = opts.ip, aliases = opts.alias }
    if mo.json then return mo.output(r) end
    mo.printf("%s: %s %s", args.CONTAINER, r.interface, table.concat(r.addresses or {}, ","))
  end,
}

wf:verb{
  name = "disconnect",
  summary = "Take a running container off a network",
  args = { { name = "NETWORK", summary = "network name" }, { name = "CONTAINER", summary = "container name or id" } },
  run = function(_, args) bridge.network_disconnect{ network = args.NETWORK, container = args.CONTAINER } end,
}

wf:verb{
  name = "setup-container",
  summary = "Prepare the default network (bridge mobileops0, forwarding, NAT) ahead of use",
  run = function() show(bridge.network_setup()) end,
}

wf:verb{
  name = "monitor",
  summary = "Per-container interface counters (what each container received and sent)",
  options = {
    { name = "follow", short = "f", summary = "refresh every --interval seconds (Ctrl-C ends it)" },
    { name = "interval", type = "number", metavar = "SECONDS", summary = "refresh interval (default 1)" },
  },
  run = function(opts)
    local columns = {
      { key = "container" }, { key = "network" }, { key = "interface" },
      { key = "rx_bytes", title = "RX", format = function(v) return mo.bytes(v) end },
      { key = "tx_bytes", title = "TX", format = function(v) return mo.bytes(v) end },
      { key = "rx_packets", title = "RX PKTS" }, { key = "tx_packets", title = "TX PKTS" },
      { key = "errors" }, { key = "dropped" },
    }
    repeat
      mo.output(mo.array(bridge.network_counters()), columns)
      if opts.follow then
        io.stdout:flush()
        mo.sleep(opts.interval or 1)
        if not mo.json then mo.print("") end
      end
    until not opts.follow
  end,
}

return wf
