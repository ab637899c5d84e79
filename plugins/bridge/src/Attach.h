// Attaching containers to networks and detaching them: the network service's work, on top
// of the allocator (Networks), rtnetlink (Netlink) and nftables (Nft).
//
// Attach, for a container whose init `pid` waits in its new network namespace:
//   for each network: lease an address, make sure the bridge exists with its gateway
//   address (ip_forward on, route_localnet on the bridge) and the network's rules; a veth
//   pair, host end `mo<id8><n>` on the bridge, peer moved into the container and
//   configured there as eth<n> with the address (and the default route through the first
//   network's gateway, unless it is internal);
//   published ports as DNAT rules to the first network's address;
//   the container's hosts file (every member of its networks by name and aliases) and
//   resolv.conf (the host's, without loopback name servers), and the hosts files of the
//   other members rewritten in place (they are bind-mounted: a rename would not show).
// What was made is recorded (kind "netattach", key the container id) before it is made,
// so detach and `system gc` find it even after a killed command. Any failure undoes all.
#pragma once

#include "Networks.h"

#include <mobileops/common/Host.h>

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <string>

namespace mobileops::bridge {

class Attacher {
public:
    explicit Attacher(const common::Host &host);

    // config: {name, aliases?, networks: [{name, aliases?, ip?}], ports: [{hostIP?,
    // hostPort, containerPort, protocol?}], hostsFile?, resolvFile?}. Network "bridge"
    // (or none given) is the default network. Returns {networks: [{name, interface,
    // addresses, gateway, bridge}], ports: [...]}.
    nlohmann::json attach(const std::string &containerId, pid_t pid, const nlohmann::json &config);
    // One more network for a running container (network connect).
    nlohmann::json connect(const std::string &containerId, pid_t pid, const std::string &network,
                           const nlohmann::json &options);
    void disconnect(const std::string &containerId, const std::string &network);
    // Everything of the container: veths, port rules, leases, its record; the other
    // members' hosts files. Idempotent.
    void detach(const std::string &containerId);

    // The attachment record of a container, or null.
    nlohmann::json attachment(const std::string &containerId) const;
    // Every attachment (network inspect, monitor).
    std::vector<nlohmann::json> attachments() const;

    // Remove a network: refused while containers are attached unless force (they are
    // detached from it then); its bridge and rules go.
    void removeNetwork(const std::string &name, bool force);
    // Prepare the default network (bridge, rules) without a container.
    Network setupDefault();
    // Attachments and leases of containers that no longer exist: their veths, rules and
    // addresses removed. Returns [{what, ...}].
    nlohmann::json gc();

private:
    void prepareBridge(class Netlink &nl, const Network &net);
    void writeHosts(const std::vector<std::string> &networks);
    const common::Host &_host;
    Networks _networks;
};

} // namespace mobileops::bridge
