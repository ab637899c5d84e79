#include "Networks.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Names.h>
#include <mobileops/common/Time.h>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>

namespace mobileops::bridge {

using common::Error;
using common::Host;
using common::quote;
using nlohmann::json;

namespace {

constexpr const char *kNetworkKind = "network";
constexpr const char *kLeaseKind = "lease";
constexpr size_t kMaxLinkName = 15; // IFNAMSIZ without the NUL

// Long names are hashed so every network gets a bridge name the kernel accepts.
std::string bridgeFor(const std::string &name) {
    if (name == kDefaultNetwork) return kDefaultNetwork;
    if (name.size() + 3 <= kMaxLinkName) return "mo-" + name;
    uint32_t h = 2166136261u; // FNV-1a
    for (unsigned char c : name) {
        h ^= c;
        h *= 16777619u;
    }
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return std::string("mo-") + hex;
}

const char *familyName(int family) { return family == AF_INET ? "IPv4" : "IPv6"; }

int bits(int family) { return family == AF_INET ? 32 : 128; }

// The address with the full prefix: what `contains` compares for a single address.
Cidr bare(const Cidr &c) {
    Cidr a = c;
    a.prefix = bits(c.family);
    return a;
}

bool sameAddress(const Cidr &a, const Cidr &b) { return a.family == b.family && a.addr == b.addr; }

// The host bits of `address` inside `subnet`: its index for Cidr::host. Nothing when
// they do not fit in 64 bits (an IPv6 address far beyond what the allocator hands out).
std::optional<uint64_t> offsetIn(const Cidr &subnet, const Cidr &address) {
    int bytes = bits(subnet.family) / 8;
    uint64_t offset = 0;
    for (int i = 0; i < bytes; ++i) {
        int networkBits = std::clamp(subnet.prefix - i * 8, 0, 8);
        uint8_t hostBits = static_cast<uint8_t>(address.addr[i] & (0xffu >> networkBits));
        if (bytes - i > 8) {
            if (hostBits) return std::nullopt;
        } else {
            offset = offset << 8 | hostBits;
        }
    }
    return offset;
}

// Its index for Cidr::host, which counts /31 and /32 (/127, /128) from the network
// address itself.
std::optional<uint64_t> indexIn(const Cidr &subnet, const Cidr &address) {
    auto offset = offsetIn(subnet, address);
    if (offset && bits(subnet.family) - subnet.prefix <= 1) ++*offset;
    return offset;
}

// Not the network address, nor IPv4's broadcast address (point-to-point subnets have
// neither).
std::string unusable(const Cidr &subnet, const Cidr &address) {
    int hostBits = bits(subnet.family) - subnet.prefix;
    if (hostBits <= 1) return {};
    auto offset = offsetIn(subnet, address);
    if (offset && *offset == 0) return "the network address of " + quote(subnet.str());
    if (subnet.family == AF_INET && offset && *offset == (uint64_t(1) << hostBits) - 1)
        return "the broadcast address of " + quote(subnet.str());
    return {};
}

// Default routes overlap everything and say nothing about the address space in use; a
// route on the network's own bridge is that network's (a bridge left by a lost record).
bool counts(const RouteInfo &route, const std::string &ownBridge) {
    return route.destination.prefix > 0 && route.device != ownBridge;
}

// What the subnet overlaps, as the error says it; empty when nothing.
std::string conflict(const Cidr &subnet, const std::vector<Network> &networks,
                     const std::vector<RouteInfo> &hostRoutes, const std::string &ownBridge) {
    for (const Network &n : networks)
        for (const Cidr &s : n.subnets)
            if (s.family == subnet.family && s.overlaps(subnet))
                return {"subnet " + quote(subnet.str()) + " overlaps network " + quote(n.name) +
                        " (" + s.str() + ")"};
    for (const RouteInfo &r : hostRoutes)
        if (counts(r, ownBridge) && r.destination.family == subnet.family &&
            r.destination.overlaps(subnet))
            return {"subnet " + quote(subnet.str()) + " overlaps the host's route to " +
                    r.destination.str() + " on " + r.device};
    return {};
}

// The first candidate that overlaps nothing: 10.91.N.0/24, or fd00:6d6f:N::/64 ("mo").
Cidr autoSubnet(int family, const std::vector<Network> &networks,
                const std::vector<RouteInfo> &hostRoutes, const std::string &ownBridge) {
    for (int n = 0; n < 256; ++n) {
        char text[40];
        if (family == AF_INET)
            std::snprintf(text, sizeof text, "10.91.%d.0/24", n);
        else
            std::snprintf(text, sizeof text, "fd00:6d6f:%x::/64", n);
        Cidr c = Cidr::parse(text, "subnet");
        if (conflict(c, networks, hostRoutes, ownBridge).empty()) return c;
    }
    throw Error(-ENOSPC, std::string("no free ") + familyName(family) + " subnet in " +
                             (family == AF_INET ? "10.91.0.0/16" : "fd00:6d6f::/32") +
                             ": give one with --subnet");
}

// A gateway given as a bare address or with its subnet's prefix, as an address of the
// subnet that a container could otherwise lease.
Cidr gatewayIn(const Cidr &subnet, const std::string &text) {
    Cidr g = Cidr::parse(text, "--gateway");
    auto invalid = [&](const std::string &why) {
        return Error(MO_E_INVALID, "invalid --gateway " + quote(text) + ": " + why);
    };
    if (g.family != subnet.family)
        throw invalid(std::string("not an ") + familyName(subnet.family) + " address like subnet " +
                      quote(subnet.str()));
    if (g.prefix != bits(g.family) && g.prefix != subnet.prefix)
        throw invalid("prefix /" + std::to_string(g.prefix) + " is not the subnet's /" +
                      std::to_string(subnet.prefix));
    g.prefix = bits(g.family);
    if (!subnet.contains(g)) throw invalid("outside subnet " + quote(subnet.str()));
    if (std::string why = unusable(subnet, g); !why.empty()) throw invalid(why);
    g.prefix = subnet.prefix;
    return g;
}

Cidr firstHost(const Cidr &subnet) {
    Cidr g = subnet.host(1).value();
    g.prefix = subnet.prefix;
    return g;
}

std::string leaseKey(const std::string &network, const Cidr &address) {
    return network + "/" + address.addrStr();
}

std::string containerList(const std::vector<Lease> &leases) {
    std::vector<std::string> names;
    for (const Lease &l : leases)
        if (std::find(names.begin(), names.end(), l.container) == names.end())
            names.push_back(l.container);
    std::sort(names.begin(), names.end());
    std::string out = names.size() == 1 ? "container " : "containers ";
    for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + quote(names[i]);
    return out;
}

} // namespace

json Network::toJson() const {
    json s = json::array(), g = json::array();
    for (const Cidr &c : subnets) s.push_back(c.str());
    for (const Cidr &c : gateways) g.push_back(c.str());
    return {{"name", name},         {"bridge", bridge},   {"subnets", s},    {"gateways", g},
            {"internal", internal}, {"created", created}, {"labels", labels}};
}

Network Network::fromJson(const json &j) {
    Network n;
    n.name = j.at("name").get<std::string>();
    n.bridge = j.value("bridge", bridgeFor(n.name));
    for (const auto &s : j.value("subnets", json::array()))
        n.subnets.push_back(Cidr::parse(s.get<std::string>(), "subnet"));
    for (const auto &g : j.value("gateways", json::array()))
        n.gateways.push_back(Cidr::parse(g.get<std::string>(), "gateway"));
    n.internal = j.value("internal", false);
    n.created = j.value("created", "");
    n.labels = j.value("labels", json::object());
    return n;
}

json Lease::toJson() const {
    return {{"network", network},
            {"container", container},
            {"interface", interface},
            {"address", address.str()}};
}

Lease Lease::fromJson(const json &j) {
    Lease l;
    l.network = j.at("network").get<std::string>();
    l.container = j.at("container").get<std::string>();
    l.interface = j.value("interface", "");
    l.address = Cidr::parse(j.at("address").get<std::string>(), "address");
    return l;
}

Networks::Networks(const common::Host &host) : _host(host) {}

Network Networks::create(const NetworkRequest &request, const std::vector<RouteInfo> &hostRoutes) {
    common::checkName("network name", request.name);
    // Rules carry the name in a comment of at most 128 bytes (nftables).
    if (request.name.size() > 64)
        throw Error(MO_E_INVALID, "invalid network name " + quote(request.name.substr(0, 64)) +
                                      "...: longer than 64 characters");
    for (const char *mode : {"bridge", "host", "none"})
        if (request.name == mode)
            throw Error(MO_E_INVALID, "invalid network name " + quote(request.name) +
                                          ": reserved for the network mode");

    Network net;
    net.name = request.name;
    net.bridge = bridgeFor(request.name);
    net.internal = request.internal;
    net.labels = request.labels.is_object() ? request.labels : json::object();

    // Per family: the subnet (nothing: pick one) and its gateway.
    std::optional<Cidr> subnet[2], gateway[2];
    bool enabled[2] = {true, request.ipv6};
    for (size_t i = 0; i < std::max(request.subnets.size(), request.gateways.size()); ++i) {
        std::string text = i < request.subnets.size() ? request.subnets[i] : "";
        std::string gw = i < request.gateways.size() ? request.gateways[i] : "";
        if (text.empty()) {
            if (!gw.empty())
                throw Error(MO_E_INVALID,
                            "invalid --gateway " + quote(gw) + ": give its --subnet too");
            continue;
        }
        Cidr s = Cidr::parse(text, "--subnet").network();
        if (s.hostCount() < 2)
            throw Error(MO_E_INVALID, "invalid --subnet " + quote(text) +
                                          ": too small for a gateway and a container");
        int f = s.family == AF_INET ? 0 : 1;
        if (subnet[f])
            throw Error(MO_E_INVALID, "invalid --subnet " + quote(text) + ": a network has one " +
                                          familyName(s.family) + " subnet at most and " +
                                          quote(subnet[f]->str()) + " is given too");
        subnet[f] = s;
        gateway[f] = gw.empty() ? firstHost(s) : gatewayIn(s, gw);
        enabled[f] = true;
    }

    Host::Transaction tx(_host);
    if (find(net.name)) throw Error(MO_E_EXISTS, "network " + quote(net.name) + " already exists");
    std::vector<Network> others = list();
    for (const Network &o : others)
        if (o.bridge == net.bridge)
            throw Error(MO_E_EXISTS, "network " + quote(net.name) + " would use bridge " +
                                         quote(net.bridge) + " of network " + quote(o.name));
    for (int f = 0; f < 2; ++f) {
        if (!enabled[f]) continue;
        if (subnet[f]) {
            std::string c = conflict(*subnet[f], others, hostRoutes, net.bridge);
            if (!c.empty()) throw Error(MO_E_EXISTS, c);
        } else {
            subnet[f] = autoSubnet(f == 0 ? AF_INET : AF_INET6, others, hostRoutes, net.bridge);
            gateway[f] = firstHost(*subnet[f]);
        }
        net.subnets.push_back(*subnet[f]);
        net.gateways.push_back(*gateway[f]);
    }
    net.created = common::nowRfc3339();
    _host.put(kNetworkKind, net.name, net.name, net.toJson(), true);
    tx.commit();
    return net;
}

Network Networks::ensureDefault(const std::vector<RouteInfo> &hostRoutes) {
    Host::Transaction tx(_host);
    if (auto existing = find(kDefaultNetwork)) {
        // Committed, not dropped: a rollback would also undo a caller's enclosing
        // transaction.
        tx.commit();
        return *existing;
    }
    std::string configured = _host.config("bridge.default_subnet", kDefaultSubnet);
    Cidr subnet = Cidr::parse(configured, "bridge.default_subnet");
    NetworkRequest request;
    request.name = kDefaultNetwork;
    request.subnets = {subnet.str()};
    Network net = create(request, hostRoutes);
    tx.commit();
    return net;
}

std::optional<Network> Networks::find(const std::string &name) const {
    auto doc = _host.get(kNetworkKind, name);
    if (!doc) return std::nullopt;
    return Network::fromJson(*doc);
}

Network Networks::get(const std::string &name) const {
    auto net = find(name);
    if (!net) throw Error(MO_E_NOT_FOUND, "no such network " + quote(name));
    return *net;
}

std::vector<Network> Networks::list() const {
    std::vector<Network> out;
    for (const json &doc : _host.list(kNetworkKind)) out.push_back(Network::fromJson(doc));
    // The store orders by a creation time in seconds; ours has nanoseconds.
    std::stable_sort(out.begin(), out.end(),
                     [](const Network &a, const Network &b) { return a.created < b.created; });
    return out;
}

void Networks::remove(const std::string &name, bool force) {
    Host::Transaction tx(_host);
    get(name);
    std::vector<Lease> held = leases(name);
    if (!held.empty() && !force)
        throw Error(MO_E_STATE, "network " + quote(name) + " is in use by " + containerList(held));
    for (const Lease &l : held) _host.remove(kLeaseKind, leaseKey(l.network, l.address));
    _host.remove(kNetworkKind, name);
    tx.commit();
}

std::vector<Lease> Networks::lease(const std::string &network, const std::string &container,
                                   const std::string &interface,
                                   const std::optional<Cidr> &wanted) {
    if (container.empty()) throw Error(MO_E_INVALID, "a lease needs a container");
    Host::Transaction tx(_host);
    Network net = get(network);
    // One read of every lease: the allocator never asks the store address by address.
    std::vector<Lease> all = leases(network);

    if (wanted && std::none_of(net.subnets.begin(), net.subnets.end(),
                               [&](const Cidr &s) { return s.family == wanted->family; }))
        throw Error(MO_E_INVALID, "invalid --ip " + quote(wanted->addrStr()) + ": network " +
                                      quote(network) + " has no " + familyName(wanted->family) +
                                      " subnet");

    std::vector<Lease> out;
    for (size_t i = 0; i < net.subnets.size(); ++i) {
        const Cidr &subnet = net.subnets[i];
        const Cidr &gateway = net.gateways.at(i);
        bool wantedHere = wanted && wanted->family == subnet.family;

        auto held = std::find_if(all.begin(), all.end(), [&](const Lease &l) {
            return l.container == container && l.address.family == subnet.family;
        });
        if (held != all.end()) {
            if (wantedHere && !sameAddress(held->address, *wanted))
                throw Error(MO_E_EXISTS, "container " + quote(container) + " already has " +
                                             quote(held->address.addrStr()) + " on network " +
                                             quote(network));
            out.push_back(*held);
            continue;
        }

        Lease l{network, container, interface, {}};
        if (wantedHere) {
            Cidr a = bare(*wanted);
            std::string shown = quote(a.addrStr());
            if (!subnet.contains(a))
                throw Error(MO_E_INVALID, "invalid --ip " + shown + ": outside network " +
                                              quote(network) + " (" + subnet.str() + ")");
            if (std::string why = unusable(subnet, a); !why.empty())
                throw Error(MO_E_INVALID, "invalid --ip " + shown + ": " + why);
            if (sameAddress(a, gateway))
                throw Error(MO_E_EXISTS,
                            "address " + shown + " is the gateway of network " + quote(network));
            for (const Lease &other : all)
                if (sameAddress(other.address, a))
                    throw Error(MO_E_EXISTS, "address " + shown + " on network " + quote(network) +
                                                 " is taken by container " +
                                                 quote(other.container));
            l.address = a;
        } else {
            // The lowest index that no lease and no gateway holds: sort what is taken and
            // walk it from 1 to the first gap, so a big subnet costs what it holds.
            std::vector<uint64_t> taken;
            for (const Lease &other : all)
                if (other.address.family == subnet.family)
                    if (auto o = indexIn(subnet, other.address)) taken.push_back(*o);
            if (auto o = indexIn(subnet, gateway)) taken.push_back(*o);
            std::sort(taken.begin(), taken.end());
            uint64_t n = 1;
            for (uint64_t t : taken) {
                if (t == n)
                    ++n;
                else if (t > n)
                    break;
            }
            auto h = subnet.host(n);
            if (!h) throw Error(-ENOSPC, "network " + quote(network) + " has no free address");
            l.address = *h;
        }
        l.address.prefix = subnet.prefix;
        _host.put(kLeaseKind, leaseKey(network, l.address), {}, l.toJson(), true);
        all.push_back(l);
        out.push_back(l);
    }
    tx.commit();
    return out;
}

std::vector<Lease> Networks::leases(const std::string &network,
                                    const std::string &container) const {
    std::vector<Lease> out;
    for (const json &doc : _host.list(kLeaseKind)) {
        Lease l = Lease::fromJson(doc);
        if ((network.empty() || l.network == network) &&
            (container.empty() || l.container == container))
            out.push_back(std::move(l));
    }
    return out;
}

std::vector<Lease> Networks::release(const std::string &container, const std::string &network) {
    Host::Transaction tx(_host);
    std::vector<Lease> dropped = leases(network, container);
    for (const Lease &l : dropped) _host.remove(kLeaseKind, leaseKey(l.network, l.address));
    tx.commit();
    return dropped;
}

} // namespace mobileops::bridge
