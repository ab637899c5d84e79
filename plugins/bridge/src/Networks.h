// Networks and address leases in the state store (kinds "network" and "lease"): the
// records behind `mobileops network`, and the address allocator (IPAM). Every change is
// one store transaction (BEGIN IMMEDIATE), so parallel commands never hand out an
// address twice and a killed command leaves either the whole change or none of it.
#pragma once

#include "Cidr.h"

#include <mobileops/common/Host.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::bridge {

// The default network: name, bridge and subnet unless configured (bridge.default_subnet).
constexpr const char *kDefaultNetwork = "mobileops0";
constexpr const char *kDefaultSubnet = "10.90.0.0/16";

struct Network {
    std::string name, bridge;
    std::vector<Cidr> subnets;  // first IPv4, then IPv6 when enabled
    std::vector<Cidr> gateways; // one per subnet: the bridge's address with the prefix
    bool internal = false;
    std::string created; // RFC 3339
    nlohmann::json labels = nlohmann::json::object();
    nlohmann::json toJson() const;
    static Network fromJson(const nlohmann::json &j);
};

struct NetworkRequest {
    std::string name;
    std::vector<std::string> subnets;  // "" or empty: the first free 10.91.N.0/24
    std::vector<std::string> gateways; // per subnet; empty: the subnet's first host
    bool internal = false;
    bool ipv6 = false; // with no IPv6 subnet given: the first free fd00:..::/64
    nlohmann::json labels = nlohmann::json::object();
};

struct Lease {
    std::string network, container, interface; // interface: "eth0", "eth1"...
    Cidr address;                              // with the subnet's prefix
    nlohmann::json toJson() const;
    static Lease fromJson(const nlohmann::json &j);
};

class Networks {
public:
    explicit Networks(const common::Host &host);

    // Validates everything first: the name (checkName "network name"), each subnet
    // (Cidr::parse with "--subnet"), a gateway inside its subnet, no overlap with another
    // network ("subnet `10.90.0.0/16` overlaps network `mobileops0` (10.90.0.0/16)") or a
    // route of the host in `hostRoutes` ("... overlaps the host's route to 10.0.0.0/8 on
    // eth0"), at most one IPv4 and one IPv6 subnet. The bridge is "mobileops0" for the
    // default network, "mo-<name>" when that fits in 15 bytes, else "mo-<8 hex of a
    // hash of the name>". MO_E_EXISTS when the name is taken.
    Network create(const NetworkRequest &request, const std::vector<RouteInfo> &hostRoutes);
    // The default network's record, created on first use (its subnet from configuration
    // `bridge.default_subnet`, else kDefaultSubnet).
    Network ensureDefault(const std::vector<RouteInfo> &hostRoutes);
    std::optional<Network> find(const std::string &name) const;
    Network get(const std::string &name) const; // MO_E_NOT_FOUND "no such network `x`"
    std::vector<Network> list() const;
    // The record only; refuses (MO_E_STATE, naming the containers) while leases exist
    // unless force, which also drops the leases.
    void remove(const std::string &name, bool force);

    // An address for container on network: `wanted` when given and free (MO_E_EXISTS
    // naming who has it otherwise), else the lowest free one after the gateway; a
    // container already holding a lease on that network gets it back. MO_E_NOSPC
    // "network `x` has no free address" when full. One per subnet family.
    std::vector<Lease> lease(const std::string &network, const std::string &container,
                             const std::string &interface,
                             const std::optional<Cidr> &wanted = std::nullopt);
    std::vector<Lease> leases(const std::string &network = {},
                              const std::string &container = {}) const;
    // Drop the container's leases (on one network, or all); returns what was dropped.
    std::vector<Lease> release(const std::string &container, const std::string &network = {});

private:
    const common::Host &_host;
};

} // namespace mobileops::bridge
