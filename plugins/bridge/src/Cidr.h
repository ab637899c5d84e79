// Addresses and prefixes, IPv4 and IPv6: parsing with clear errors, containment and
// overlap, and the n-th host address of a subnet for the address allocator.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace mobileops::bridge {

struct Cidr {
    int family = 0;                 // AF_INET or AF_INET6
    std::array<uint8_t, 16> addr{}; // network byte order; IPv4 in the first 4 bytes
    int prefix = 0;

    // "172.20.0.0/16", "fd00::/64", "172.20.0.1/16" (an address with its prefix). A bare
    // address gets /32 or /128. Error MO_E_INVALID naming `what`: "invalid --subnet
    // `172.20.0.0/33`: prefix 33 is longer than 32".
    static Cidr parse(const std::string &text, const std::string &what);
    // An address without prefix ("172.20.0.5").
    static Cidr address(const std::string &text, const std::string &what);

    std::string str() const;                // "172.20.0.0/16"
    std::string addrStr() const;            // "172.20.0.0"
    Cidr network() const;                   // host bits cleared
    bool contains(const Cidr &other) const; // other (address or subnet) lies inside
    bool overlaps(const Cidr &other) const;
    bool operator==(const Cidr &o) const = default;
    // The subnet's n-th address (n = 1: the first host, usually the gateway); nothing when
    // n is past the last usable address (the broadcast address of IPv4 is not usable).
    std::optional<Cidr> host(uint64_t n) const;
    // How many addresses the allocator may hand out (capped at 2^32).
    uint64_t hostCount() const;
};

// A route of the host's main table (Netlink::routes), for the overlap checks.
struct RouteInfo {
    Cidr destination; // 0.0.0.0/0 for a default route
    std::string device;
};

} // namespace mobileops::bridge
