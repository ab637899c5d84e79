// NAT, isolation and published ports through nftables (libnftables), all in one table of
// our own, `inet mobileops`, in the calling thread's network namespace. Never `iptables`.
//
// Chains (created on first use, base chains at the usual priorities):
//   prerouting  nat  dstnat  published ports for traffic arriving from elsewhere
//   output      nat  dstnat  published ports for the host's own connections (127.0.0.1
//                            and its addresses): `fib daddr type local`
//   postrouting nat  srcnat  masquerade of each non-internal network's subnet leaving
//                            it; masquerade of 127.0.0.0/8 sent into a bridge (hairpin
//                            of localhost connections, with route_localnet on the bridge)
//   forward     filter       networks isolated from each other; internal networks
//                            reach nothing outside their bridge
// Every rule carries a comment "mobileops:<owner>" (owner: "net:<network>" or
// "ctr:<container id>"), so rules are listed and removed by owner.
#pragma once

#include "Cidr.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

struct nft_ctx;

namespace mobileops::bridge {

struct PortMapping {
    std::string hostIp; // "" : every address of the host
    uint16_t hostPort = 0;
    std::string containerIp;
    uint16_t containerPort = 0;
    std::string protocol = "tcp"; // tcp or udp
};

struct NetworkRules {
    std::string name;   // network name (owner "net:<name>")
    std::string bridge; // its bridge link
    std::vector<Cidr> subnets;
    bool internal = false;
};

class Nft {
public:
    Nft();
    ~Nft();
    Nft(const Nft &) = delete;
    Nft &operator=(const Nft &) = delete;

    // Rules of a network (masquerade unless internal, isolation, internal drop); replaces
    // what the owner had. Creates the table and chains when missing.
    void setNetwork(const NetworkRules &network);
    // DNAT rules of a container's published ports (owner "ctr:<id>"); replaces.
    void setPorts(const std::string &containerId, const std::string &bridge,
                  const std::vector<PortMapping> &ports);
    // Remove every rule of an owner ("net:<name>" or "ctr:<id>"); none is fine.
    void removeOwner(const std::string &owner);
    // Owners that have rules now (for `system gc` and `integrity network`).
    std::vector<std::string> owners();
    // The table as nft's JSON (`nft -j list table inet mobileops`), {} when absent.
    nlohmann::json table();
    // Remove the whole table (tests, and gc when no network is left).
    void removeTable();

private:
    struct Listing; // what list() found: rule handles and set elements by owner

    // Run an nft script; throws Error with nft's error text and the command that failed.
    std::string run(const std::string &script, bool json = false);
    Listing list();
    // Build a script from the current listing and run it; when it fails because the table
    // changed under us (another command), build it again from a fresh listing.
    void apply(const std::function<std::string(const Listing &)> &build);
    // nft_ctx_new opens its netlink socket: an Nft works in the network namespace of the
    // thread that made it, whichever thread calls it later.
    nft_ctx *_ctx = nullptr;
};

} // namespace mobileops::bridge
