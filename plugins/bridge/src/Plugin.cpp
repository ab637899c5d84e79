// The plugin's C surface: the descriptor, the mo_network_service trampolines the runtime
// attaches containers through, and the JSON methods of the network workflow.
#include "Attach.h"
#include "Check.h"
#include "Netlink.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Json.h>
#include <mobileops/plugin.hpp>

#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <set>

namespace mobileops::bridge {
namespace {

using common::Error;
using common::quote;
using nlohmann::json;

std::string str(const json &a, const char *key) { return common::stringArg(a, key); }
std::vector<std::string> strings(const json &a, const char *key) {
    return common::stringsArg(a, key);
}

class BridgePlugin : public sdk::Plugin {
public:
    void init() override {
        _hostApi = std::make_unique<common::Host>(&host(), handle());
        _attacher = std::make_unique<Attacher>(*_hostApi);
        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.attach = &attach;
        _iface.detach = &detach;
        service(MO_SERVICE_NETWORK, "bridge", &_iface);
        registerMethods();
    }

    sdk::Probe probe() override {
        try {
            Netlink nl;
            return {true, "bridges, veth pairs and nftables in this network namespace"};
        } catch (const std::exception &e) {
            return {false, e.what()};
        }
    }

private:
    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        return Plugin::guard<BridgePlugin>(p, err, std::forward<Fn>(fn));
    }
    static json parse(const char *text, const char *what) {
        return common::parseArgument(text, what);
    }

    static int attach(void *p, const char *id, int pid, const char *config, mo_buffer *out,
                      mo_error *err) {
        return guard(p, err, [&](BridgePlugin &s) {
            common::setResult(
                s.host(), out,
                s._attacher->attach(id ? id : "", pid, parse(config, "network config")));
        });
    }

    static int detach(void *p, const char *id, mo_error *err) {
        return guard(p, err, [&](BridgePlugin &s) { s._attacher->detach(id ? id : ""); });
    }

    // A running container's id and init pid from the state store.
    std::pair<std::string, pid_t> running(const std::string &ref) const {
        std::optional<json> rec = _hostApi->find("container", ref);
        if (!rec && ref.size() == 64) rec = _hostApi->get("container", ref);
        if (!rec) throw Error(MO_E_NOT_FOUND, "no such container " + quote(ref));
        std::string st = rec->value("status", "");
        if (st != "running" && st != "paused")
            throw Error(MO_E_STATE, "container " + quote(ref) + " is not running");
        return {rec->value("id", ""), rec->value("pid", 0)};
    }

    json inspect(const Network &net) const {
        json j = net.toJson();
        json containers = json::array();
        for (const json &a : _attacher->attachments())
            for (const auto &n : a["networks"])
                if (n.value("name", "") == net.name)
                    containers.push_back({{"id", a.value("container", "")},
                                          {"name", a.value("name", "")},
                                          {"interface", n.value("interface", "")},
                                          {"addresses", n["addresses"]},
                                          {"hostEnd", n.value("hostEnd", "")}});
        j["containers"] = containers;
        return j;
    }

    void registerMethods() {
        auto args = [](const std::string &t) { return parse(t.c_str(), "arguments"); };
        method(
            "network_create", "a network: bridge, subnet(s), gateway, internal",
            [=, this](const std::string &t) {
                json a = args(t);
                NetworkRequest r;
                r.name = str(a, "name");
                r.subnets = strings(a, "subnet");
                r.gateways = strings(a, "gateway");
                r.internal = a.value("internal", false);
                r.ipv6 = a.value("ipv6", false);
                if (a.contains("labels") && a["labels"].is_object()) r.labels = a["labels"];
                Netlink nl;
                std::vector<RouteInfo> routes = nl.routes(AF_INET);
                for (auto &x : nl.routes(AF_INET6)) routes.push_back(std::move(x));
                Networks networks(*_hostApi);
                Network net = networks.create(r, routes);
                return inspect(net).dump();
            },
            "{name, subnet (one or a list), gateway, internal, ipv6, labels}");
        method("network_list", "every network with its containers", [this](const std::string &) {
            json out = json::array();
            for (const Network &n : Networks(*_hostApi).list()) out.push_back(inspect(n));
            return out.dump();
        });
        method(
            "network_inspect", "one network: subnets, bridge, containers and addresses",
            [=, this](const std::string &t) {
                return inspect(Networks(*_hostApi).get(str(args(t), "name"))).dump();
            },
            "{name}");
        method(
            "network_rm", "remove a network, its bridge and rules",
            [=, this](const std::string &t) {
                json a = args(t);
                _attacher->removeNetwork(str(a, "name"), a.value("force", false));
                return std::string();
            },
            "{name, force}");
        method("network_prune", "remove every network no container uses (not the default)",
               [this](const std::string &) {
                   json removed = json::array();
                   std::set<std::string> used;
                   for (const json &a : _attacher->attachments())
                       for (const auto &n : a["networks"]) used.insert(n.value("name", ""));
                   for (const Network &n : Networks(*_hostApi).list()) {
                       if (n.name == kDefaultNetwork || used.count(n.name)) continue;
                       _attacher->removeNetwork(n.name, false);
                       removed.push_back(n.name);
                   }
                   return json{{"removed", removed}}.dump();
               });
        method(
            "network_connect", "attach a running container to one more network",
            [=, this](const std::string &t) {
                json a = args(t);
                auto [id, pid] = running(str(a, "container"));
                return _attacher->connect(id, pid, str(a, "network"), a).dump();
            },
            "{container, network, ip, aliases}");
        method(
            "network_disconnect", "detach a running container from a network",
            [=, this](const std::string &t) {
                json a = args(t);
                auto [id, pid] = running(str(a, "container"));
                (void)pid;
                _attacher->disconnect(id, str(a, "network"));
                return std::string();
            },
            "{container, network}");
        method("network_setup", "prepare the default network (bridge, NAT) without a container",
               [this](const std::string &) { return inspect(_attacher->setupDefault()).dump(); });
        method("network_counters", "per-container interface counters (host ends)",
               [this](const std::string &) {
                   json out = json::array();
                   Netlink nl;
                   for (const json &a : _attacher->attachments())
                       for (const auto &n : a["networks"]) {
                           json row = {{"container", a.value("name", "")},
                                       {"network", n.value("name", "")},
                                       {"interface", n.value("interface", "")}};
                           try {
                               // The host end's receive is the container's transmit.
                               LinkCounters c = nl.counters(n.value("hostEnd", ""));
                               row["rx_bytes"] = c.txBytes;
                               row["tx_bytes"] = c.rxBytes;
                               row["rx_packets"] = c.txPackets;
                               row["tx_packets"] = c.rxPackets;
                               row["errors"] = c.rxErrors + c.txErrors;
                               row["dropped"] = c.rxDropped + c.txDropped;
                           } catch (const Error &e) {
                               row["error"] = e.what();
                           }
                           out.push_back(row);
                       }
                   return out.dump();
               });
        method("network_check",
               "the bridges, veths, addresses and nftables rules the records expect against "
               "what exists (missing, extra)",
               [this](const std::string &) { return checkNetworks(*_hostApi).dump(); });
        method("gc", "remove what killed commands left: attachments, leases, veths, rules",
               [this](const std::string &) {
                   return json{{"released", _attacher->gc()}}.dump();
               });
    }

    std::unique_ptr<common::Host> _hostApi;
    std::unique_ptr<Attacher> _attacher;
    mo_network_service _iface{};
};

} // namespace
} // namespace mobileops::bridge

MOBILEOPS_PLUGIN(mobileops::bridge::BridgePlugin, "bridge", "0.1.0",
                 "bridge networks: veth pairs, address allocation, NAT, published ports, names",
                 "network:bridge")
