#include "Attach.h"

#include "Netlink.h"
#include "Nft.h"

#include <mobileops/common/Errors.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace mobileops::bridge {

using common::Error;
using common::quote;
using nlohmann::json;

namespace {

const char kAttachKind[] = "netattach";
const char kContainerKind[] = "container";

std::string hostEnd(const std::string &id, size_t n) {
    return "mo" + id.substr(0, 8) + std::to_string(n);
}
std::string peerTemp(const std::string &id, size_t n) {
    return "mp" + id.substr(0, 8) + std::to_string(n);
}

std::vector<RouteInfo> hostRoutes(Netlink &nl) {
    std::vector<RouteInfo> routes = nl.routes(AF_INET);
    for (auto &r : nl.routes(AF_INET6)) routes.push_back(std::move(r));
    return routes;
}

// A file rewritten in place: it is bind-mounted into containers, and a bind mount keeps
// the inode it was made with.
void rewrite(const std::string &path, const std::string &text) {
    if (path.empty()) return;
    int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) throw common::sysError("write " + quote(path), errno);
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            ::close(fd);
            throw common::sysError("write " + quote(path), e);
        }
        off += static_cast<size_t>(n);
    }
    ::close(fd);
}

// The host's resolv.conf without loopback name servers (a resolver on the host's
// loopback is not reachable from the container's namespace).
std::string resolvConf() {
    std::ifstream in("/etc/resolv.conf");
    std::string out, line;
    bool servers = false;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string key, value;
        words >> key >> value;
        if (key == "nameserver") {
            if (value.rfind("127.", 0) == 0 || value == "::1") continue;
            servers = true;
        }
        out += line + "\n";
    }
    if (!servers) out += "# the host has no name server reachable from containers\n";
    return out;
}

std::string networkName(const std::string &name) {
    return name.empty() || name == "bridge" ? kDefaultNetwork : name;
}

std::vector<PortMapping> portMappings(const json &ports, const std::string &containerIp) {
    std::vector<PortMapping> out;
    if (!ports.is_array()) return out;
    for (const auto &p : ports) {
        if (!p.contains("hostPort")) continue;
        PortMapping m;
        m.hostIp = p.value("hostIP", "");
        m.hostPort = p.value("hostPort", uint16_t(0));
        m.containerPort = p.value("containerPort", uint16_t(0));
        m.protocol = p.value("protocol", "tcp");
        m.containerIp = containerIp;
        if (m.protocol != "tcp" && m.protocol != "udp")
            throw Error(MO_E_UNSUPPORTED,
                        "publishing " + quote(m.protocol) + " ports is not supported");
        out.push_back(m);
    }
    return out;
}

} // namespace

Attacher::Attacher(const common::Host &host) : _host(host), _networks(host) {}

json Attacher::attachment(const std::string &containerId) const {
    auto rec = _host.get(kAttachKind, containerId);
    return rec ? *rec : json();
}

std::vector<json> Attacher::attachments() const { return _host.list(kAttachKind); }

void Attacher::prepareBridge(Netlink &nl, const Network &net) {
    // One command at a time per network: parallel starts would otherwise replace each
    // other's rules half-way.
    common::Host::Lock lock = _host.lock("network/" + net.name);
    nl.ensureBridge(net.bridge, net.gateways);
    setNetSysctl("ipv4/ip_forward", "1");
    setNetSysctl("ipv4/conf/" + net.bridge + "/route_localnet", "1");
    Nft().setNetwork({net.name, net.bridge, net.subnets, net.internal});
}

Network Attacher::setupDefault() {
    Netlink nl;
    Network net = _networks.ensureDefault(hostRoutes(nl));
    prepareBridge(nl, net);
    return net;
}

json Attacher::attach(const std::string &containerId, pid_t pid, const json &config) {
    std::vector<json> wanted;
    if (auto it = config.find("networks"); it != config.end() && it->is_array())
        for (const auto &n : *it) wanted.push_back(n.is_string() ? json{{"name", n}} : n);
    if (wanted.empty()) wanted.push_back({{"name", kDefaultNetwork}});

    json record = {{"container", containerId},
                   {"name", config.value("name", containerId.substr(0, 12))},
                   {"aliases", config.value("aliases", json::array())},
                   {"hostsFile", config.value("hostsFile", "")},
                   {"resolvFile", config.value("resolvFile", "")},
                   {"pid", pid},
                   {"networks", json::array()},
                   {"ports", json::array()}};
    _host.put(kAttachKind, containerId, "", record);
    try {
        json out = {{"networks", json::array()}};
        Netlink nl;
        std::vector<RouteInfo> routes = hostRoutes(nl);
        std::string firstAddress;
        std::vector<std::string> names;
        for (size_t i = 0; i < wanted.size(); ++i) {
            std::string name = networkName(wanted[i].value("name", ""));
            Network net =
                name == kDefaultNetwork ? _networks.ensureDefault(routes) : _networks.get(name);
            std::optional<Cidr> ip;
            if (wanted[i].contains("ip") && !wanted[i]["ip"].get<std::string>().empty())
                ip = Cidr::address(wanted[i]["ip"].get<std::string>(), "--ip");
            std::string iface = "eth" + std::to_string(i);
            std::vector<Lease> leases = _networks.lease(net.name, containerId, iface, ip);
            json entry = {{"name", net.name},
                          {"bridge", net.bridge},
                          {"interface", iface},
                          {"hostEnd", hostEnd(containerId, i)},
                          {"aliases", wanted[i].value("aliases", json::array())},
                          {"addresses", json::array()},
                          {"internal", net.internal}};
            for (const Lease &l : leases) entry["addresses"].push_back(l.address.str());
            record["networks"].push_back(entry);
            _host.put(kAttachKind, containerId, "", record); // before the links exist

            prepareBridge(nl, net);
            nl.createVeth(hostEnd(containerId, i), peerTemp(containerId, i), net.bridge, pid);
            bool route = i == 0 && !net.internal;
            inNetworkNamespaceOf(pid, [&] {
                // As podman: ping works for the container's users without CAP_NET_RAW
                // (ICMP datagram sockets).
                if (i == 0) setNetSysctl("ipv4/ping_group_range", "0 2147483647");
                Netlink inside;
                inside.rename(peerTemp(containerId, i), iface);
                for (const Lease &l : leases) inside.addAddress(iface, l.address);
                inside.setUp(iface);
                if (route)
                    for (const Cidr &g : net.gateways)
                        inside.addRoute(
                            Cidr::parse(g.family == AF_INET ? "0.0.0.0/0" : "::/0", "route"),
                            g.addrStr(), iface);
            });
            if (i == 0)
                for (const Lease &l : leases)
                    if (l.address.family == AF_INET) firstAddress = l.address.addrStr();
            if (route) entry["gateway"] = net.gateways.front().addrStr();
            out["networks"].push_back(entry);
            names.push_back(net.name);
        }
        std::vector<PortMapping> ports =
            portMappings(config.value("ports", json::array()), firstAddress);
        if (!ports.empty()) {
            if (firstAddress.empty())
                throw Error(MO_E_INVALID,
                            "published ports need an IPv4 address on the first network");
            Nft().setPorts(containerId, record["networks"][0]["bridge"], ports);
            for (const auto &p : ports)
                record["ports"].push_back({{"hostIP", p.hostIp},
                                           {"hostPort", p.hostPort},
                                           {"containerIP", p.containerIp},
                                           {"containerPort", p.containerPort},
                                           {"protocol", p.protocol}});
            _host.put(kAttachKind, containerId, "", record);
        }
        out["ports"] = record["ports"];
        rewrite(record.value("resolvFile", ""), resolvConf());
        writeHosts(names);
        return out;
    } catch (...) {
        try {
            detach(containerId);
        } catch (...) {
        }
        throw;
    }
}

json Attacher::connect(const std::string &containerId, pid_t pid, const std::string &network,
                       const json &options) {
    json record = attachment(containerId);
    if (record.is_null())
        throw Error(MO_E_STATE, "container " + quote(containerId.substr(0, 12)) +
                                    " has no network namespace of ours to connect");
    std::string name = networkName(network);
    for (const auto &n : record["networks"])
        if (n.value("name", "") == name)
            throw Error(MO_E_EXISTS, "container " + quote(record.value("name", "")) +
                                         " is already on network " + quote(name));
    Netlink nl;
    Network net =
        name == kDefaultNetwork ? _networks.ensureDefault(hostRoutes(nl)) : _networks.get(name);
    // The next free interface number (a disconnect leaves a hole).
    std::set<std::string> used;
    for (const auto &n : record["networks"]) used.insert(n.value("interface", ""));
    size_t i = 0;
    while (used.count("eth" + std::to_string(i))) ++i;
    std::string iface = "eth" + std::to_string(i);
    std::optional<Cidr> ip;
    if (options.contains("ip") && options["ip"].is_string() &&
        !options["ip"].get<std::string>().empty())
        ip = Cidr::address(options["ip"].get<std::string>(), "--ip");
    std::vector<Lease> leases = _networks.lease(net.name, containerId, iface, ip);
    json entry = {{"name", net.name},
                  {"bridge", net.bridge},
                  {"interface", iface},
                  {"hostEnd", hostEnd(containerId, i)},
                  {"aliases", options.value("aliases", json::array())},
                  {"addresses", json::array()},
                  {"internal", net.internal}};
    for (const Lease &l : leases) entry["addresses"].push_back(l.address.str());
    record["networks"].push_back(entry);
    _host.put(kAttachKind, containerId, "", record);
    try {
        prepareBridge(nl, net);
        nl.createVeth(hostEnd(containerId, i), peerTemp(containerId, i), net.bridge, pid);
        inNetworkNamespaceOf(pid, [&] {
            Netlink inside;
            inside.rename(peerTemp(containerId, i), iface);
            for (const Lease &l : leases) inside.addAddress(iface, l.address);
            inside.setUp(iface);
        });
    } catch (...) {
        try {
            disconnect(containerId, net.name);
        } catch (...) {
        }
        throw;
    }
    std::vector<std::string> names;
    for (const auto &n : record["networks"]) names.push_back(n.value("name", ""));
    writeHosts(names);
    return entry;
}

void Attacher::disconnect(const std::string &containerId, const std::string &network) {
    json record = attachment(containerId);
    std::string name = networkName(network);
    if (record.is_null())
        throw Error(MO_E_NOT_FOUND,
                    "container " + quote(containerId.substr(0, 12)) + " is on no network");
    json kept = json::array();
    std::optional<json> gone;
    for (auto &n : record["networks"]) {
        if (n.value("name", "") == name)
            gone = n;
        else
            kept.push_back(n);
    }
    if (!gone)
        throw Error(MO_E_NOT_FOUND, "container " + quote(record.value("name", "")) +
                                        " is not on network " + quote(name));
    Netlink nl;
    nl.remove(gone->value("hostEnd", "")); // its peer in the container goes with it
    _networks.release(containerId, name);
    record["networks"] = kept;
    _host.put(kAttachKind, containerId, "", record);
    std::vector<std::string> names{name};
    for (const auto &n : kept) names.push_back(n.value("name", ""));
    writeHosts(names);
}

void Attacher::detach(const std::string &containerId) {
    json record = attachment(containerId);
    std::vector<std::string> names;
    if (!record.is_null()) {
        Netlink nl;
        for (const auto &n : record["networks"]) {
            nl.remove(n.value("hostEnd", ""));
            names.push_back(n.value("name", ""));
        }
    }
    Nft().removeOwner("ctr:" + containerId);
    for (const Lease &l : _networks.release(containerId)) names.push_back(l.network);
    _host.remove(kAttachKind, containerId);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    writeHosts(names);
}

void Attacher::writeHosts(const std::vector<std::string> &networks) {
    if (networks.empty()) return;
    std::set<std::string> affected(networks.begin(), networks.end());
    std::vector<json> all = attachments();
    // Names per network: "<address> <name> <aliases>..."
    std::map<std::string, std::vector<std::string>> lines;
    for (const json &a : all)
        for (const auto &n : a["networks"]) {
            std::string line;
            for (const auto &addr : n["addresses"]) {
                std::string ip = addr.get<std::string>();
                ip = ip.substr(0, ip.find('/'));
                line = ip + "\t" + a.value("name", "");
                for (const auto &alias : a["aliases"]) line += " " + alias.get<std::string>();
                for (const auto &alias : n["aliases"]) line += " " + alias.get<std::string>();
                lines[n.value("name", "")].push_back(line);
            }
        }
    for (const json &a : all) {
        std::string file = a.value("hostsFile", "");
        if (file.empty()) continue;
        bool touched = false;
        for (const auto &n : a["networks"])
            touched = touched || affected.count(n.value("name", ""));
        if (!touched) continue;
        std::string text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
        std::set<std::string> seen;
        for (const auto &n : a["networks"])
            for (const auto &line : lines[n.value("name", "")])
                if (seen.insert(line).second) text += line + "\n";
        try {
            rewrite(file, text);
        } catch (const Error &e) {
            _host.log(MO_LOG_WARNING, std::string("hosts file: ") + e.what());
        }
    }
}

void Attacher::removeNetwork(const std::string &name, bool force) {
    Network net = _networks.get(networkName(name));
    std::vector<std::string> users;
    for (const json &a : attachments())
        for (const auto &n : a["networks"])
            if (n.value("name", "") == net.name) users.push_back(a.value("container", ""));
    if (!users.empty() && !force) {
        std::string list;
        for (const auto &u : users) {
            auto rec = _host.get(kContainerKind, u);
            list += (list.empty() ? "" : ", ") +
                    quote(rec ? rec->value("name", u.substr(0, 12)) : u.substr(0, 12));
        }
        throw Error(MO_E_STATE, "network " + quote(net.name) + " is in use by " + list +
                                    ": disconnect them first or use --force");
    }
    for (const auto &u : users) disconnect(u, net.name);
    _networks.remove(net.name, true);
    Netlink().remove(net.bridge);
    Nft().removeOwner("net:" + net.name);
}

json Attacher::gc() {
    json released = json::array();
    std::set<std::string> known;
    for (const json &a : attachments()) {
        std::string id = a.value("container", "");
        if (_host.get(kContainerKind, id)) {
            known.insert(id);
            continue;
        }
        detach(id);
        released.push_back(
            {{"container", id}, {"what", "network attachment of a removed container"}});
    }
    // Leases and rules whose attachment record is gone (a command killed between steps).
    for (const Lease &l : _networks.leases())
        if (!known.count(l.container) && !_host.get(kContainerKind, l.container)) {
            _networks.release(l.container);
            released.push_back(
                {{"container", l.container}, {"what", "address lease " + l.address.str()}});
        }
    // No sweep of links or rules by name: another mobileops root (or a test's) may share
    // this network namespace, and everything of ours was recorded before it was made.
    return released;
}

} // namespace mobileops::bridge
