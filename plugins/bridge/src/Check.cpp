#include "Check.h"

#include "Attach.h"
#include "Networks.h"
#include "Nft.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <nftables/libnftables.h>

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <thread>

namespace mobileops::bridge {

using common::Error;
using nlohmann::json;

namespace {

constexpr const char *kTable = "inet mobileops";
constexpr const char *kTag = "mobileops:";

// ---- links ----------------------------------------------------------------------------

struct Link {
    std::string kind;   // "bridge", "veth", ... ("device" when the kernel names none)
    std::string master; // the bridge it is enslaved to, or ""
    std::vector<Cidr> addresses;
};

template <typename T, void (*Free)(T *)> struct Freer {
    void operator()(T *p) const {
        if (p) Free(p);
    }
};
using SockRef = std::unique_ptr<nl_sock, Freer<nl_sock, nl_socket_free>>;
using CacheRef = std::unique_ptr<nl_cache, Freer<nl_cache, nl_cache_free>>;

[[noreturn]] void netlinkFailed(const std::string &what, int err) {
    throw Error(MO_E_INTERNAL, "network check: " + what + ": " + nl_geterror(err));
}

// Every link of this namespace by name, with its kind, bridge and addresses: one dump
// of links and one of addresses.
std::map<std::string, Link> currentLinks() {
    SockRef sock(nl_socket_alloc());
    if (!sock) throw Error(-ENOMEM, "network check: open a netlink socket: out of memory");
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
        netlinkFailed("open a netlink socket", err);
    nl_cache *raw = nullptr;
    if (int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &raw); err < 0)
        netlinkFailed("list the links", err);
    CacheRef linkCache(raw);
    std::map<int, std::string> names;
    for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
        auto *l = reinterpret_cast<rtnl_link *>(o);
        if (const char *name = rtnl_link_get_name(l)) names[rtnl_link_get_ifindex(l)] = name;
    }
    std::map<std::string, Link> links;
    for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
        auto *l = reinterpret_cast<rtnl_link *>(o);
        auto name = names.find(rtnl_link_get_ifindex(l));
        if (name == names.end()) continue;
        const char *kind = rtnl_link_get_type(l);
        auto master = names.find(rtnl_link_get_master(l));
        links[name->second] = {
            kind ? kind : "device", master == names.end() ? "" : master->second, {}};
    }
    if (int err = rtnl_addr_alloc_cache(sock.get(), &raw); err < 0)
        netlinkFailed("list the addresses", err);
    CacheRef addrCache(raw);
    for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
        auto *a = reinterpret_cast<rtnl_addr *>(o);
        nl_addr *local = rtnl_addr_get_local(a);
        auto name = names.find(rtnl_addr_get_ifindex(a));
        if (!local || name == names.end()) continue;
        Cidr c;
        c.family = nl_addr_get_family(local);
        size_t size = std::min<size_t>(nl_addr_get_len(local), c.addr.size());
        std::memcpy(c.addr.data(), nl_addr_get_binary_addr(local), size);
        c.prefix = rtnl_addr_get_prefixlen(a);
        links[name->second].addresses.push_back(c);
    }
    return links;
}

bool looksLikeOurBridge(const std::string &name) {
    return name == kDefaultNetwork || name.starts_with("mo-");
}

// A host end as Attacher names it: "mo", 8 hex digits of the container id, the index.
bool looksLikeOurVeth(const std::string &name) {
    auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    return name.size() > 10 && name.starts_with("mo") &&
           std::all_of(name.begin() + 2, name.begin() + 10, hex) &&
           std::all_of(name.begin() + 10, name.end(), digit);
}

// ---- nftables -------------------------------------------------------------------------

// One thing of the table (chain, set, set element or rule): `key` is what makes two
// equal, `description` what the report shows.
struct Entry {
    std::string key, comment;
    json description;
};

struct Table {
    bool present = false;
    std::vector<Entry> entries;
};

struct NftContext {
    NftContext() : ctx(nft_ctx_new(NFT_CTX_DEFAULT)) {
        if (!ctx) throw Error(MO_E_UNSUPPORTED, "network check: nftables: cannot make a context");
        nft_ctx_buffer_output(ctx);
        nft_ctx_buffer_error(ctx);
    }
    ~NftContext() { nft_ctx_free(ctx); }
    NftContext(const NftContext &) = delete;
    NftContext &operator=(const NftContext &) = delete;
    nft_ctx *ctx;
};

std::string trim(const std::string &s) {
    auto begin = s.find_first_not_of(" \t");
    auto end = s.find_last_not_of(" \t");
    return begin == std::string::npos ? "" : s.substr(begin, end - begin + 1);
}

// Each rule as nft prints it, without its comment, by handle: the JSON form is exact but
// unreadable. An absent table has none.
std::map<long, std::string> ruleTexts() {
    NftContext nft;
    nft_ctx_output_set_flags(nft.ctx, NFT_CTX_OUTPUT_HANDLE);
    int rc = nft_run_cmd_from_buffer(nft.ctx, ("list table " + std::string(kTable)).c_str());
    std::istringstream in(rc == 0 ? nft_ctx_get_output_buffer(nft.ctx) : "");
    std::map<long, std::string> texts;
    const std::string handleMark = " # handle ";
    bool inChain = false;
    for (std::string line; std::getline(in, line);) {
        line = trim(line);
        if (line.starts_with("chain ")) {
            inChain = true;
            continue;
        }
        if (line == "}") inChain = false;
        auto mark = line.rfind(handleMark);
        if (!inChain || mark == std::string::npos) continue;
        std::string text = line.substr(0, mark);
        text = trim(text.substr(0, text.find(" comment \"")));
        texts[std::strtol(line.c_str() + mark + handleMark.size(), nullptr, 10)] = text;
    }
    return texts;
}

Table readTable(Nft &nft) {
    Table t;
    json doc = nft.table();
    t.present = doc.contains("nftables");
    if (!t.present) return t;
    std::map<long, std::string> texts = ruleTexts();
    for (const auto &item : doc["nftables"]) {
        if (auto c = item.find("chain"); c != item.end()) {
            json shape = *c;
            shape.erase("handle");
            std::string name = c->value("name", "");
            t.entries.push_back(
                {"chain\n" + shape.dump(), "", {{"kind", "chain"}, {"chain", name}}});
        } else if (auto s = item.find("set"); s != item.end()) {
            std::string name = s->value("name", "");
            t.entries.push_back({"set\n" + name + "\n" + s->value("type", json()).dump(),
                                 "",
                                 {{"kind", "set"}, {"set", name}}});
            for (const auto &e : s->value("elem", json::array())) {
                // An element with a comment is {"elem": {"val": ..., "comment": ...}}.
                json val = e.is_object() && e.contains("elem") ? e["elem"].value("val", json()) : e;
                std::string comment =
                    e.is_object() && e.contains("elem") ? e["elem"].value("comment", "") : "";
                std::string shown = val.is_string() ? val.get<std::string>() : val.dump();
                t.entries.push_back({"element\n" + name + "\n" + val.dump() + "\n" + comment,
                                     comment,
                                     {{"kind", "element"},
                                      {"set", name},
                                      {"element", shown},
                                      {"comment", comment}}});
            }
        } else if (auto r = item.find("rule"); r != item.end()) {
            std::string chain = r->value("chain", ""), comment = r->value("comment", "");
            json expr = r->value("expr", json::array());
            auto text = texts.find(r->value("handle", 0L));
            t.entries.push_back({"rule\n" + chain + "\n" + comment + "\n" + expr.dump(),
                                 comment,
                                 {{"kind", "rule"},
                                  {"chain", chain},
                                  {"comment", comment},
                                  {"rule", text == texts.end() ? expr.dump() : text->second}}});
        }
    }
    return t;
}

struct Ports {
    std::string container, bridge;
    std::vector<PortMapping> mappings;
};

// What Nft writes for these networks and ports, written by Nft itself into a network
// namespace made for the purpose on a thread of its own, and read back from there. With
// no network, a placeholder network's rules made and removed again leave the table's
// skeleton (chains, set, base rules), which stays in a table whose networks are gone.
Table render(const std::vector<NetworkRules> &networks, const std::vector<Ports> &ports) {
    Table out;
    std::exception_ptr failed;
    std::thread scratch([&] {
        try {
            if (::unshare(CLONE_NEWNET) != 0)
                throw common::sysError(
                    "network check: make a scratch network namespace for the expected rules",
                    errno);
            Nft nft;
            for (const auto &n : networks) nft.setNetwork(n);
            for (const auto &p : ports) nft.setPorts(p.container, p.bridge, p.mappings);
            if (networks.empty()) {
                nft.setNetwork({"placeholder", "mo-placeholder", {}, false});
                nft.removeOwner("net:placeholder");
            }
            out = readTable(nft);
        } catch (...) {
            failed = std::current_exception();
        }
    });
    scratch.join();
    if (failed) std::rethrow_exception(failed);
    return out;
}

// Entries of `from` that `against` lacks, one for one (a rule twice needs two); those
// whose comment is in `ignored` are left out.
json lacking(const Table &from, const Table &against, const std::set<std::string> &ignored = {}) {
    std::map<std::string, int> have;
    for (const auto &e : against.entries) ++have[e.key];
    json out = json::array();
    for (const auto &e : from.entries) {
        if (have[e.key] > 0) {
            --have[e.key];
            continue;
        }
        if (!ignored.count(e.comment)) out.push_back(e.description);
    }
    return out;
}

std::vector<PortMapping> mappings(const json &ports) {
    std::vector<PortMapping> out;
    for (const auto &p : ports) {
        PortMapping m;
        m.hostIp = p.value("hostIP", "");
        m.hostPort = p.value("hostPort", uint16_t(0));
        m.containerIp = p.value("containerIP", "");
        m.containerPort = p.value("containerPort", uint16_t(0));
        m.protocol = p.value("protocol", "tcp");
        out.push_back(m);
    }
    return out;
}

json array(const std::set<std::string> &names) { return json(names); }

// Nothing missing, extra or detached anywhere in the report.
bool clean(const json &report) {
    for (const auto &[section, lists] : report.items())
        for (const char *key : {"missing", "extra", "detached"})
            if (lists.is_object() && lists.contains(key) && !lists[key].empty()) return false;
    return true;
}

class Checker {
public:
    explicit Checker(const common::Host &host)
        : _networks(Networks(host).list()), _attachments(Attacher(host).attachments()),
          _links(currentLinks()) {
        std::set<std::string> inUse;
        for (const json &a : _attachments)
            for (const auto &n : a.value("networks", json::array())) {
                inUse.insert(n.value("name", ""));
                if (!n.value("bridge", "").empty()) _expectedBridges.insert(n.value("bridge", ""));
            }
        for (const Network &net : _networks) {
            if (inUse.count(net.name) || isA(net.bridge, "bridge")) {
                _active.push_back(&net);
                _expectedBridges.insert(net.bridge);
            } else {
                _idleOwners.insert(kTag + std::string("net:") + net.name);
            }
        }
    }

    json bridges() const {
        std::set<std::string> missing, extra, known = _expectedBridges;
        for (const Network &net : _networks) known.insert(net.bridge);
        for (const auto &b : _expectedBridges)
            if (!isA(b, "bridge")) missing.insert(b);
        for (const auto &[name, link] : _links)
            if (link.kind == "bridge" && looksLikeOurBridge(name) && !known.count(name))
                extra.insert(name);
        return {{"expected", array(_expectedBridges)},
                {"missing", array(missing)},
                {"extra", array(extra)}};
    }

    // Gateway addresses of the bridges that exist (a missing bridge says enough).
    json addresses() const {
        json missing = json::array();
        for (const Network *net : _active) {
            if (!isA(net->bridge, "bridge")) continue;
            const auto &have = _links.at(net->bridge).addresses;
            for (const Cidr &g : net->gateways)
                if (std::find(have.begin(), have.end(), g) == have.end())
                    missing.push_back(
                        {{"bridge", net->bridge}, {"network", net->name}, {"address", g.str()}});
        }
        return {{"missing", missing}};
    }

    json veths() const {
        std::set<std::string> expected, missing, extra;
        json detached = json::array();
        for (const json &a : _attachments)
            for (const auto &n : a.value("networks", json::array())) {
                std::string veth = n.value("hostEnd", ""), bridge = n.value("bridge", "");
                expected.insert(veth);
                if (!isA(veth, "veth"))
                    missing.insert(veth);
                else if (const std::string &master = _links.at(veth).master; master != bridge)
                    detached.push_back({{"veth", veth}, {"bridge", bridge}, {"master", master}});
            }
        for (const auto &[name, link] : _links)
            if (link.kind == "veth" && looksLikeOurVeth(name) && !expected.count(name))
                extra.insert(name);
        return {{"expected", array(expected)},
                {"missing", array(missing)},
                {"extra", array(extra)},
                {"detached", detached}};
    }

    json nft() const {
        Nft nft;
        Table live = readTable(nft);
        Table expected;
        if (!_active.empty() || live.present) expected = render(networkRules(), ports());
        json missing = json::array();
        if (expected.present && !live.present)
            missing.push_back({{"kind", "table"}, {"table", kTable}});
        for (auto &e : lacking(expected, live)) missing.push_back(e);
        return {{"table", kTable},
                {"present", live.present},
                {"missing", missing},
                {"extra", lacking(live, expected, _idleOwners)}};
    }

private:
    bool isA(const std::string &name, const char *kind) const {
        auto it = _links.find(name);
        return it != _links.end() && it->second.kind == kind;
    }

    std::vector<NetworkRules> networkRules() const {
        std::vector<NetworkRules> rules;
        for (const Network *net : _active)
            rules.push_back({net->name, net->bridge, net->subnets, net->internal});
        return rules;
    }

    // Published ports go to the first network's address, through its bridge.
    std::vector<Ports> ports() const {
        std::vector<Ports> out;
        for (const json &a : _attachments) {
            json nets = a.value("networks", json::array());
            json published = a.value("ports", json::array());
            if (!published.empty() && !nets.empty())
                out.push_back(
                    {a.value("container", ""), nets[0].value("bridge", ""), mappings(published)});
        }
        return out;
    }

    std::vector<Network> _networks;
    std::vector<json> _attachments;
    std::map<std::string, Link> _links;
    // Networks whose bridge, addresses and rules are expected; the rules of the others
    // (by comment) are neither expected nor extra.
    std::vector<const Network *> _active;
    std::set<std::string> _expectedBridges, _idleOwners;
};

} // namespace

json checkNetworks(const common::Host &host) {
    Checker check(host);
    json report = {{"bridges", check.bridges()},
                   {"veths", check.veths()},
                   {"nft", check.nft()},
                   {"addresses", check.addresses()}};
    report["ok"] = clean(report);
    return report;
}

} // namespace mobileops::bridge
