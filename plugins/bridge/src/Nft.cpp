#include "Nft.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>
#include <mobileops/common/Names.h>

#include <nftables/libnftables.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <set>
#include <sstream>

namespace mobileops::bridge {

using common::Error;
using common::quote;

namespace {

constexpr const char *kTable = "inet mobileops";
constexpr const char *kTag = "mobileops:";
// The kernel keeps at most 128 bytes of a rule's comment (NFTNL_UDATA_COMMENT_MAXLEN).
constexpr size_t kCommentMax = 128;
constexpr size_t kIfnameMax = 15; // IFNAMSIZ - 1

// Base chains, created with the table. The output hook accepts no symbolic "dstnat".
constexpr const char *kChains[] = {
    "prerouting { type nat hook prerouting priority dstnat; policy accept; }",
    "output { type nat hook output priority -100; policy accept; }",
    "postrouting { type nat hook postrouting priority srcnat; policy accept; }",
    "forward { type filter hook forward priority filter; policy accept; }",
};

// Accepted before any drop of ours: replies of connections that were allowed, and
// connections to published ports, which are meant to be reachable from everywhere the
// host is. Inserted in reverse (insert puts a rule first).
constexpr const char *kBaseRules[] = {
    "ct status dnat accept",
    "ct state established,related accept",
};
constexpr const char *kBaseOwner = "base";

bool isIdentChar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
}

bool isIdent(const std::string &s, size_t max) {
    return !s.empty() && s.size() <= max && std::all_of(s.begin(), s.end(), isIdentChar);
}

// Names end up inside nft's quoted strings, so only a small alphabet is let through.
void checkIfname(const std::string &what, const std::string &name) {
    if (!isIdent(name, kIfnameMax))
        throw Error(MO_E_INVALID, "invalid " + what + " " + quote(name) +
                                      ": expected 1 to 15 letters, digits, `_`, `.`, `-`");
}

std::string tag(const std::string &owner) { return kTag + owner; }

// Network names may be longer than what fits in a comment after "mobileops:net:".
void checkNetworkName(const std::string &name) {
    common::checkName("network name", name);
    size_t max = kCommentMax - tag("net:").size();
    if (name.size() > max)
        throw Error(MO_E_INVALID, "invalid network name " + quote(name) + ": at most " +
                                      std::to_string(max) + " bytes (it tags nftables rules)");
}

void checkContainerId(const std::string &id) {
    size_t max = kCommentMax - tag("ctr:").size();
    if (!isIdent(id, max))
        throw Error(MO_E_INVALID, "invalid container id " + quote(id) + ": expected 1 to " +
                                      std::to_string(max) + " letters, digits, `_`, `.`, `-`");
}

std::string comment(const std::string &owner) { return " comment \"" + tag(owner) + "\""; }

// AF_INET or AF_INET6 of a bare address; throws naming `what`.
int addressFamily(const std::string &text, const std::string &what) {
    unsigned char buf[sizeof(struct in6_addr)];
    if (::inet_pton(AF_INET, text.c_str(), buf) == 1) return AF_INET;
    if (::inet_pton(AF_INET6, text.c_str(), buf) == 1) return AF_INET6;
    throw Error(MO_E_INVALID,
                "invalid " + what + " " + quote(text) + ": expected an IPv4 or IPv6 address");
}

const char *ipKeyword(int family) { return family == AF_INET6 ? "ip6" : "ip"; }

std::string portLabel(const PortMapping &p) {
    std::string s = p.hostIp.empty()                          ? ""
                    : p.hostIp.find(':') != std::string::npos ? "[" + p.hostIp + "]:"
                                                              : p.hostIp + ":";
    return s + std::to_string(p.hostPort) + ":" + std::to_string(p.containerPort) + "/" +
           p.protocol;
}

void checkPort(const PortMapping &p) {
    std::string label = "port mapping " + quote(portLabel(p));
    if (p.protocol != "tcp" && p.protocol != "udp")
        throw Error(MO_E_INVALID, "invalid protocol " + quote(p.protocol) + " in " + label +
                                      ": expected tcp or udp");
    if (p.hostPort == 0)
        throw Error(MO_E_INVALID, "invalid host port `0` in " + label + ": expected 1 to 65535");
    if (p.containerPort == 0)
        throw Error(MO_E_INVALID,
                    "invalid container port `0` in " + label + ": expected 1 to 65535");
    int family = addressFamily(p.containerIp, "container address");
    if (!p.hostIp.empty() && addressFamily(p.hostIp, "host address") != family)
        throw Error(MO_E_INVALID, "invalid " + label + ": host address " + quote(p.hostIp) +
                                      " and container address " + quote(p.containerIp) +
                                      " are not of the same family");
}

std::string owned(const std::string &comment) {
    std::string prefix = kTag;
    return comment.compare(0, prefix.size(), prefix) == 0 ? comment.substr(prefix.size()) : "";
}

// nft reports "/proc/self/fd/7:3:1-20: Error: Could not process rule: File exists", the
// command and a line of carets; keep the reason and the script's line it names.
Error nftError(const std::string &errors, const std::string &script) {
    std::istringstream in(errors);
    std::string line, reason, command;
    while (std::getline(in, line)) {
        auto at = line.find("Error: ");
        if (at == std::string::npos) continue;
        reason = line.substr(at + 7);
        // The location is "<file>:<line>:<columns>: ".
        std::string where = line.substr(0, at);
        if (where.size() >= 2) where.resize(where.size() - 2);
        auto last = where.rfind(':');
        auto prev =
            last == std::string::npos || last == 0 ? std::string::npos : where.rfind(':', last - 1);
        if (prev != std::string::npos) {
            size_t n = std::strtoul(where.substr(prev + 1, last - prev - 1).c_str(), nullptr, 10);
            std::istringstream lines(script);
            for (size_t i = 1; std::getline(lines, command) && i < n; ++i) command.clear();
        }
        if (command.empty() && std::getline(in, line) &&
            line.find_first_not_of(" ^") != std::string::npos)
            command = line;
        break;
    }
    if (reason.empty()) reason = errors.empty() ? "failed with no message" : errors;
    reason = reason.substr(0, reason.find('\n'));
    if (command.empty()) command = script.substr(0, script.find('\n'));
    reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
    return Error(MO_E_INTERNAL, "nft " + quote(command) + ": " + reason);
}

bool isAbsent(const Error &e) {
    return std::string(e.what()).find("no such file or directory") != std::string::npos;
}

} // namespace

struct Nft::Listing {
    bool present = false;
    std::string raw; // to tell whether the table changed between two listings
    struct Rule {
        std::string chain, owner;
        long handle = 0;
    };
    std::vector<Rule> rules;
    struct Element {
        std::string value, owner;
    };
    std::vector<Element> bridges;

    bool has(const std::string &owner) const {
        return std::any_of(rules.begin(), rules.end(),
                           [&](const Rule &r) { return r.owner == owner; });
    }

    // Delete the owner's rules and set elements (those of `keep` stay).
    std::string remove(const std::string &owner, const std::string &keep = {}) const {
        std::string s;
        for (auto &r : rules)
            if (r.owner == owner)
                s += "delete rule " + std::string(kTable) + " " + r.chain + " handle " +
                     std::to_string(r.handle) + "\n";
        for (auto &e : bridges)
            if (e.owner == owner && e.value != keep)
                s += "delete element " + std::string(kTable) + " bridges { \"" + e.value + "\" }\n";
        return s;
    }

    // The table, its chains and set, and the base rules, as far as they are missing. A
    // table made by this script is created with `create`, so two commands racing to make
    // it do not both add the base rules: the loser fails and builds again.
    std::string ensure() const {
        std::string s = present ? "add table " : "create table ";
        s += std::string(kTable) + "\n";
        for (auto *chain : kChains) s += "add chain " + std::string(kTable) + " " + chain + "\n";
        s += "add set " + std::string(kTable) + " bridges { type ifname; }\n";
        if (!has(kBaseOwner))
            for (auto *rule : kBaseRules)
                s += "insert rule " + std::string(kTable) + " forward " + rule +
                     comment(kBaseOwner) + "\n";
        return s;
    }
};

Nft::Nft() {
    _ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!_ctx) throw Error(MO_E_UNSUPPORTED, "nftables: cannot make a context");
    if (nft_ctx_buffer_output(_ctx) != 0 || nft_ctx_buffer_error(_ctx) != 0) {
        nft_ctx_free(_ctx);
        throw Error(MO_E_INTERNAL, "nftables: cannot buffer its output");
    }
}

Nft::~Nft() { nft_ctx_free(_ctx); }

std::string Nft::run(const std::string &script, bool json) {
    nft_ctx_output_set_flags(_ctx, json ? NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE : 0);
    int rc;
    if (json) {
        rc = nft_run_cmd_from_buffer(_ctx, script.c_str());
    } else {
        // From a buffer, nft 1.0.6 echoes the script's first line with every error whatever
        // line failed, and gives no line number; from a file it names the line.
        int fd = ::memfd_create("mobileops-nft", MFD_CLOEXEC);
        if (fd < 0) throw common::sysError("nft: memfd_create", errno);
        bool written =
            ::write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size());
        int err = errno;
        if (!written) {
            ::close(fd);
            throw common::sysError("nft: write the script", err);
        }
        rc = nft_run_cmd_from_filename(_ctx, ("/proc/self/fd/" + std::to_string(fd)).c_str());
        ::close(fd);
    }
    // Reading a buffer also empties it for the next command.
    std::string out = nft_ctx_get_output_buffer(_ctx);
    std::string err = nft_ctx_get_error_buffer(_ctx);
    if (rc == 0) return out;
    Error e = nftError(err, script);
    // nft's own errors do not tell a kernel without nf_tables (EOPNOTSUPP, also what an
    // invalid chain change gives) from a bad script; a bare listing does.
    nft_ctx_output_set_flags(_ctx, 0);
    bool usable = nft_run_cmd_from_buffer(_ctx, "list tables") == 0;
    nft_ctx_get_output_buffer(_ctx);
    nft_ctx_get_error_buffer(_ctx);
    if (!usable)
        throw Error(MO_E_UNSUPPORTED, std::string("nftables is not usable here: ") + e.what());
    throw e;
}

Nft::Listing Nft::list() {
    Listing l;
    try {
        l.raw = run("list table " + std::string(kTable), true);
    } catch (const Error &e) {
        if (isAbsent(e)) return l;
        throw;
    }
    l.present = true;
    auto doc = nlohmann::json::parse(l.raw, nullptr, false);
    if (doc.is_discarded() || !doc.contains("nftables"))
        throw Error(MO_E_INTERNAL, "nft: cannot read its JSON listing of " + quote(kTable));
    for (auto &item : doc["nftables"]) {
        if (auto r = item.find("rule"); r != item.end()) {
            std::string owner = owned(r->value("comment", ""));
            if (!owner.empty())
                l.rules.push_back({r->value("chain", ""), owner, r->value("handle", 0L)});
        } else if (auto s = item.find("set");
                   s != item.end() && s->value("name", "") == "bridges") {
            for (auto &e : s->value("elem", nlohmann::json::array())) {
                // An element with a comment is {"elem": {"val": ..., "comment": ...}}.
                if (e.is_string())
                    l.bridges.push_back({e.get<std::string>(), ""});
                else if (e.contains("elem"))
                    l.bridges.push_back(
                        {e["elem"].value("val", ""), owned(e["elem"].value("comment", ""))});
            }
        }
    }
    return l;
}

void Nft::apply(const std::function<std::string(const Listing &)> &build) {
    for (int attempt = 0;; ++attempt) {
        Listing before = list();
        std::string script = build(before);
        if (script.empty()) return;
        try {
            run(script);
            return;
        } catch (const Error &) {
            if (attempt >= 2 || list().raw == before.raw) throw;
        }
    }
}

void Nft::setNetwork(const NetworkRules &network) {
    checkNetworkName(network.name);
    std::string owner = "net:" + network.name;
    const std::string &br = network.bridge;
    checkIfname("bridge name", br);
    for (auto &subnet : network.subnets)
        if (subnet.family != AF_INET && subnet.family != AF_INET6)
            throw Error(MO_E_INVALID, "invalid subnet of network " + quote(network.name) +
                                          ": neither IPv4 nor IPv6");

    std::string t = kTable, c = comment(owner), b = "\"" + br + "\"";
    std::string rules;
    rules += "add element " + t + " bridges { " + b + c + " }\n";
    if (!network.internal)
        for (auto &subnet : network.subnets) {
            std::string ip = ipKeyword(subnet.family), net = subnet.network().str();
            rules += "add rule " + t + " postrouting " + ip + " saddr " + net + " " + ip +
                     " daddr != " + net + " masquerade" + c + "\n";
        }
    // Published ports answer on 127.0.0.1: DNAT sends such packets out of the bridge
    // (route_localnet), and the container must see an address it can answer.
    rules += "add rule " + t + " postrouting oifname " + b + " ip saddr 127.0.0.0/8 masquerade" +
             c + "\n";
    rules += "add rule " + t + " forward iifname " + b + " oifname " + b + " accept" + c + "\n";
    rules += "add rule " + t + " forward iifname " + b + " oifname @bridges oifname != " + b +
             " drop" + c + "\n";
    if (network.internal) {
        rules +=
            "add rule " + t + " forward iifname " + b + " oifname != " + b + " drop" + c + "\n";
        rules +=
            "add rule " + t + " forward oifname " + b + " iifname != " + b + " drop" + c + "\n";
    }
    try {
        apply([&](const Listing &l) {
            std::string s = l.ensure() + l.remove(owner, br);
            // The bridge may be in the set already under another owner (a network that was
            // removed by hand and made again): take it over.
            for (auto &e : l.bridges)
                if (e.value == br && e.owner != owner)
                    s += "delete element " + t + " bridges { " + b + " }\n";
            return s + rules;
        });
    } catch (const Error &e) {
        throw common::wrap(e, "set the nftables rules of network " + quote(network.name));
    }
}

void Nft::setPorts(const std::string &containerId, const std::string &bridge,
                   const std::vector<PortMapping> &ports) {
    checkContainerId(containerId);
    checkIfname("bridge name", bridge);
    for (auto &p : ports) checkPort(p);
    std::string owner = "ctr:" + containerId;

    std::string t = kTable, c = comment(owner), rules;
    for (auto &p : ports) {
        int family = addressFamily(p.containerIp, "container address");
        std::string ip = ipKeyword(family);
        // Without a host address (or 0.0.0.0, ::): only packets for one of the host's own
        // addresses, not everything passing through with that port (outbound traffic).
        bool anyAddress = p.hostIp.empty() || p.hostIp == "0.0.0.0" || p.hostIp == "::";
        std::string match = anyAddress ? std::string("meta nfproto ") +
                                             (family == AF_INET ? "ipv4" : "ipv6") +
                                             " fib daddr type local"
                                       : ip + " daddr " + p.hostIp;
        std::string target = family == AF_INET
                                 ? p.containerIp + ":" + std::to_string(p.containerPort)
                                 : "[" + p.containerIp + "]:" + std::to_string(p.containerPort);
        std::string dnat = match + " " + p.protocol + " dport " + std::to_string(p.hostPort) +
                           " dnat " + ip + " to " + target + c + "\n";
        rules += "add rule " + t + " prerouting " + dnat;
        rules += "add rule " + t + " output " + dnat;
        // A container reaching a published port of its own network through the host:
        // without masquerade the answer would go straight back over the bridge, from an
        // address the client never talked to.
        rules += "add rule " + t + " postrouting iifname \"" + bridge + "\" oifname \"" + bridge +
                 "\" " + ip + " daddr " + p.containerIp + " " + p.protocol + " dport " +
                 std::to_string(p.containerPort) + " ct status dnat masquerade" + c + "\n";
    }
    try {
        apply([&](const Listing &l) {
            if (rules.empty() && !l.has(owner)) return std::string();
            return (rules.empty() ? std::string() : l.ensure()) + l.remove(owner) + rules;
        });
    } catch (const Error &e) {
        throw common::wrap(e, "set the published ports of container " + quote(containerId));
    }
}

void Nft::removeOwner(const std::string &owner) {
    try {
        apply([&](const Listing &l) { return l.remove(owner); });
    } catch (const Error &e) {
        throw common::wrap(e, "remove the nftables rules of " + quote(owner));
    }
}

std::vector<std::string> Nft::owners() {
    std::set<std::string> found;
    Listing l = list();
    for (auto &r : l.rules) found.insert(r.owner);
    for (auto &e : l.bridges)
        if (!e.owner.empty()) found.insert(e.owner);
    // The base rules belong to the table, not to a network or container.
    found.erase(kBaseOwner);
    return {found.begin(), found.end()};
}

nlohmann::json Nft::table() {
    Listing l = list();
    if (!l.present) return nlohmann::json::object();
    return nlohmann::json::parse(l.raw);
}

void Nft::removeTable() {
    // `add` first so the delete never fails on an absent table (nft 1.0.6 has no
    // `destroy`); one script, so it is still a single transaction.
    run("add table " + std::string(kTable) + "\ndelete table " + std::string(kTable) + "\n");
}

} // namespace mobileops::bridge
