// Cidr: parsing (with the messages a user sees), containment, overlap and the host
// addresses the allocator hands out.
#include "Cidr.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <string>

namespace mobileops::bridge {
namespace {

Cidr parse(const std::string &text) { return Cidr::parse(text, "--subnet"); }

std::string parseError(const std::string &text, const std::string &what = "--subnet") {
    try {
        Cidr::parse(text, what);
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error for " << text;
    return {};
}

std::string host(const std::string &subnet, uint64_t n) {
    auto h = parse(subnet).host(n);
    return h ? h->str() : "none";
}

TEST(Cidr, ParsesIPv4AndIPv6) {
    Cidr c = parse("172.20.0.0/16");
    EXPECT_EQ(c.family, AF_INET);
    EXPECT_EQ(c.prefix, 16);
    EXPECT_EQ(c.addr[0], 172);
    EXPECT_EQ(c.addr[1], 20);
    EXPECT_EQ(c.str(), "172.20.0.0/16");

    Cidr v6 = parse("fd00:1::/64");
    EXPECT_EQ(v6.family, AF_INET6);
    EXPECT_EQ(v6.prefix, 64);
    EXPECT_EQ(v6.str(), "fd00:1::/64");
    EXPECT_EQ(parse("FD00:0001:0000::/48").str(), "fd00:1::/48"); // canonical form
    EXPECT_EQ(parse("0.0.0.0/0").str(), "0.0.0.0/0");
    EXPECT_EQ(parse("::/0").str(), "::/0");
}

TEST(Cidr, KeepsTheHostPartOfAnAddressWithItsPrefix) {
    Cidr c = parse("172.20.0.1/16");
    EXPECT_EQ(c.str(), "172.20.0.1/16");
    EXPECT_EQ(c.addrStr(), "172.20.0.1");
    EXPECT_EQ(c.network().str(), "172.20.0.0/16");
    EXPECT_EQ(parse("fd00::1:2/64").network().str(), "fd00::/64");
    EXPECT_EQ(parse("10.1.2.3/13").network().str(), "10.0.0.0/13");
    EXPECT_EQ(parse("255.255.255.255/0").network().str(), "0.0.0.0/0");
}

TEST(Cidr, ABareAddressIsAHost) {
    EXPECT_EQ(parse("10.0.0.7").str(), "10.0.0.7/32");
    EXPECT_EQ(parse("fd00::7").str(), "fd00::7/128");
    Cidr a = Cidr::address("10.0.0.7", "--ip");
    EXPECT_EQ(a.str(), "10.0.0.7/32");
    EXPECT_EQ(Cidr::address("::1", "--ip").str(), "::1/128");
}

TEST(Cidr, ErrorsNameTheFieldAndTheValue) {
    EXPECT_EQ(parseError("10.0.0.0/33"),
              "invalid --subnet `10.0.0.0/33`: prefix 33 is longer than 32");
    EXPECT_EQ(parseError("fd00::/129"),
              "invalid --subnet `fd00::/129`: prefix 129 is longer than 128");
    EXPECT_EQ(parseError("10.0.0/8"), "invalid --subnet `10.0.0/8`: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError("10.0.0.256/8"),
              "invalid --subnet `10.0.0.256/8`: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError(""), "invalid --subnet ``: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError("/24"), "invalid --subnet `/24`: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError("fd00::%eth0/64"),
              "invalid --subnet `fd00::%eth0/64`: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError(" 10.0.0.0/8"),
              "invalid --subnet ` 10.0.0.0/8`: not an IPv4 or IPv6 address");
    EXPECT_EQ(parseError("10.0.0.0/"),
              "invalid --subnet `10.0.0.0/`: prefix `` is not a number from 0 to 32");
    EXPECT_EQ(parseError("10.0.0.0/x"),
              "invalid --subnet `10.0.0.0/x`: prefix `x` is not a number from 0 to 32");
    EXPECT_EQ(parseError("10.0.0.0/-1"),
              "invalid --subnet `10.0.0.0/-1`: prefix `-1` is not a number from 0 to 32");
    EXPECT_EQ(parseError("10.0.0.0/+8"),
              "invalid --subnet `10.0.0.0/+8`: prefix `+8` is not a number from 0 to 32");
    EXPECT_EQ(parseError("10.0.0.0/8/8"),
              "invalid --subnet `10.0.0.0/8/8`: prefix `8/8` is not a number from 0 to 32");
    EXPECT_EQ(parseError("10.0.0.0/99999999999999999999"),
              "invalid --subnet `10.0.0.0/99999999999999999999`: prefix `99999999999999999999` "
              "is not a number from 0 to 32");
    EXPECT_EQ(parseError("fd00::/1x"),
              "invalid --subnet `fd00::/1x`: prefix `1x` is not a number from 0 to 128");
    EXPECT_EQ(parseError("10.0.0.1/33", "--gateway"),
              "invalid --gateway `10.0.0.1/33`: prefix 33 is longer than 32");

    try {
        Cidr::address("10.0.0.1/24", "--ip");
        ADD_FAILURE() << "a prefix was accepted";
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_STREQ(e.what(), "invalid --ip `10.0.0.1/24`: expected an address without a prefix");
    }
    EXPECT_THROW(Cidr::address("nope", "--ip"), sdk::Error);
}

TEST(Cidr, Containment) {
    Cidr net = parse("10.90.0.0/16");
    EXPECT_TRUE(net.contains(parse("10.90.0.0/16")));
    EXPECT_TRUE(net.contains(parse("10.90.5.0/24")));
    EXPECT_TRUE(net.contains(Cidr::address("10.90.255.255", "ip")));
    EXPECT_FALSE(net.contains(Cidr::address("10.91.0.0", "ip")));
    EXPECT_FALSE(net.contains(parse("10.0.0.0/8"))); // bigger than the network
    EXPECT_FALSE(parse("10.90.5.0/24").contains(net));
    EXPECT_TRUE(parse("0.0.0.0/0").contains(parse("192.168.1.1")));
    // An address with its prefix contains what its network contains.
    EXPECT_TRUE(parse("10.90.0.1/16").contains(Cidr::address("10.90.3.4", "ip")));

    Cidr v6 = parse("fd00:1::/64");
    EXPECT_TRUE(v6.contains(Cidr::address("fd00:1::ffff:1", "ip")));
    EXPECT_FALSE(v6.contains(Cidr::address("fd00:2::1", "ip")));
    EXPECT_TRUE(parse("fd00::/8").contains(v6));
    // Families never contain each other, not even ::/0 and an IPv4 address.
    EXPECT_FALSE(parse("::/0").contains(Cidr::address("10.0.0.1", "ip")));
    EXPECT_FALSE(parse("0.0.0.0/0").contains(Cidr::address("::", "ip")));
}

TEST(Cidr, Overlap) {
    EXPECT_TRUE(parse("10.0.0.0/8").overlaps(parse("10.90.0.0/16")));
    EXPECT_TRUE(parse("10.90.0.0/16").overlaps(parse("10.0.0.0/8")));
    EXPECT_TRUE(parse("10.90.0.0/16").overlaps(parse("10.90.0.0/16")));
    EXPECT_FALSE(parse("10.90.0.0/16").overlaps(parse("10.91.0.0/16")));
    EXPECT_FALSE(parse("10.90.0.0/24").overlaps(parse("10.90.1.0/24")));
    EXPECT_TRUE(parse("10.90.0.0/23").overlaps(parse("10.90.1.0/24")));
    EXPECT_TRUE(parse("0.0.0.0/0").overlaps(parse("172.20.0.0/16")));
    EXPECT_FALSE(parse("172.16.0.0/12").overlaps(parse("172.32.0.0/16")));
    EXPECT_TRUE(parse("fd00::/64").overlaps(parse("fd00::/48")));
    EXPECT_FALSE(parse("fd00::/64").overlaps(parse("fd00:0:0:1::/64")));
    EXPECT_FALSE(parse("10.0.0.0/8").overlaps(parse("::/0")));
    // Host bits of an address with a prefix do not matter.
    EXPECT_TRUE(parse("10.90.0.1/16").overlaps(parse("10.90.200.0/24")));
}

TEST(Cidr, HostsOfAnIPv4Subnet) {
    EXPECT_EQ(host("10.90.0.0/16", 1), "10.90.0.1/16");
    EXPECT_EQ(host("10.90.0.0/16", 2), "10.90.0.2/16");
    EXPECT_EQ(host("10.90.0.0/16", 256), "10.90.1.0/16");
    EXPECT_EQ(host("10.90.0.0/16", 65534), "10.90.255.254/16");
    EXPECT_EQ(host("10.90.0.0/16", 65535), "none"); // the broadcast address
    EXPECT_EQ(host("10.90.0.0/16", 0), "none");     // the network address
    EXPECT_EQ(parse("10.90.0.0/16").hostCount(), 65534u);
    // From an address with its prefix: counted from the network, not the address.
    EXPECT_EQ(host("10.90.7.9/24", 1), "10.90.7.1/24");

    EXPECT_EQ(parse("192.168.1.0/24").hostCount(), 254u);
    EXPECT_EQ(host("192.168.1.0/24", 254), "192.168.1.254/24");
    EXPECT_EQ(host("192.168.1.0/24", 255), "none");
    EXPECT_EQ(parse("192.168.1.0/30").hostCount(), 2u);
    EXPECT_EQ(host("192.168.1.0/30", 1), "192.168.1.1/30");
    EXPECT_EQ(host("192.168.1.0/30", 2), "192.168.1.2/30");
    EXPECT_EQ(host("192.168.1.0/30", 3), "none");
    // The carry runs across bytes.
    EXPECT_EQ(host("10.0.0.0/8", 65536 + 256 + 1), "10.1.1.1/8");
    EXPECT_EQ(host("10.0.0.0/8", (1u << 24) - 2), "10.255.255.254/8");
    EXPECT_EQ(host("10.0.0.0/8", (1u << 24) - 1), "none");
    EXPECT_EQ(parse("0.0.0.0/0").hostCount(), (uint64_t{1} << 32) - 2);
    EXPECT_EQ(host("0.0.0.0/0", (uint64_t{1} << 32) - 2), "255.255.255.254/0");
}

TEST(Cidr, PointToPointAndSingleAddressSubnets) {
    // RFC 3021: both addresses of a /31 are hosts.
    EXPECT_EQ(parse("10.0.0.4/31").hostCount(), 2u);
    EXPECT_EQ(host("10.0.0.4/31", 1), "10.0.0.4/31");
    EXPECT_EQ(host("10.0.0.4/31", 2), "10.0.0.5/31");
    EXPECT_EQ(host("10.0.0.4/31", 3), "none");
    EXPECT_EQ(parse("10.0.0.4/32").hostCount(), 1u);
    EXPECT_EQ(host("10.0.0.4/32", 1), "10.0.0.4/32");
    EXPECT_EQ(host("10.0.0.4/32", 2), "none");
    // RFC 6164 for IPv6 /127; /128 is the address itself.
    EXPECT_EQ(parse("fd00::/127").hostCount(), 2u);
    EXPECT_EQ(host("fd00::/127", 1), "fd00::/127");
    EXPECT_EQ(host("fd00::/127", 2), "fd00::1/127");
    EXPECT_EQ(host("fd00::5/128", 1), "fd00::5/128");
    EXPECT_EQ(host("fd00::5/128", 2), "none");
}

TEST(Cidr, HostsOfAnIPv6Subnet) {
    EXPECT_EQ(host("fd00:1::/64", 1), "fd00:1::1/64");
    EXPECT_EQ(host("fd00:1::/64", 0x10000), "fd00:1::1:0/64");
    EXPECT_EQ(host("fd00:1::/64", 0), "none");
    // The last address is usable (no broadcast in IPv6).
    EXPECT_EQ(parse("fd00::/120").hostCount(), 255u);
    EXPECT_EQ(host("fd00::/120", 255), "fd00::ff/120");
    EXPECT_EQ(host("fd00::/120", 256), "none");
    EXPECT_EQ(parse("fd00::/112").hostCount(), 65535u);
}

TEST(Cidr, HostCountIsCappedAt2To32) {
    constexpr uint64_t cap = uint64_t{1} << 32;
    EXPECT_EQ(parse("fd00::/64").hostCount(), cap);
    EXPECT_EQ(parse("::/0").hostCount(), cap);
    EXPECT_EQ(parse("fd00::/96").hostCount(), cap - 1);
    EXPECT_EQ(parse("fd00::/95").hostCount(), cap);
    EXPECT_EQ(host("fd00:1::/64", cap), "fd00:1::1:0:0/64");
    EXPECT_EQ(host("fd00:1::/64", cap + 1), "none");
    EXPECT_EQ(host("fd00::/96", cap - 1), "fd00::ffff:ffff/96");
    EXPECT_EQ(host("fd00::/96", cap), "none");
}

TEST(Cidr, Equality) {
    EXPECT_EQ(parse("10.0.0.0/8"), parse("10.0.0.0/8"));
    EXPECT_NE(parse("10.0.0.0/8"), parse("10.0.0.0/9"));
    EXPECT_NE(parse("10.0.0.1/8"), parse("10.0.0.0/8"));
    EXPECT_EQ(parse("10.0.0.1/8").network(), parse("10.0.0.0/8"));
}

} // namespace
} // namespace mobileops::bridge
