// Networks and leases (the address allocator) over the core's real host table and SQLite
// store in a temporary root: records, refusals, allocation order, 20 processes leasing at
// once, and a /16 holding 1000 leases. Only the store is used: no link, route or rule is
// made, so these tests need no network namespace; host routes are passed in.
#include "Networks.h"

#include "BridgeTestSupport.h"
#include "TestUtil.h"

#include "mobileops/core/Config.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <set>

using namespace mobileops::bridge;
using mobileops::test::CoreHost;
using nlohmann::json;

namespace {

namespace core = mobileops::core;
using mobileops::common::Host;
using mobileops::sdk::Error;

// The host table with its store reads and writes counted, to show the allocator's cost
// in store round trips rather than in time.
std::atomic<int> storeCalls{0};
const mo_host_api *realApi = nullptr;

mo_host_api countingApi(const mo_host_api *real) {
    realApi = real;
    mo_host_api api = *real;
    api.store_get = [](mo_plugin *p, const char *k, const char *key, mo_buffer *out, mo_error *e) {
        ++storeCalls;
        return realApi->store_get(p, k, key, out, e);
    };
    api.store_find = [](mo_plugin *p, const char *k, const char *name, mo_buffer *out,
                        mo_error *e) {
        ++storeCalls;
        return realApi->store_find(p, k, name, out, e);
    };
    api.store_put = [](mo_plugin *p, const char *k, const char *key, const char *name,
                       const char *doc, uint32_t flags, mo_error *e) {
        ++storeCalls;
        return realApi->store_put(p, k, key, name, doc, flags, e);
    };
    api.store_delete = [](mo_plugin *p, const char *k, const char *key, mo_error *e) {
        ++storeCalls;
        return realApi->store_delete(p, k, key, e);
    };
    api.store_list = [](mo_plugin *p, const char *k, mo_buffer *out, mo_error *e) {
        ++storeCalls;
        return realApi->store_list(p, k, out, e);
    };
    return api;
}

struct Failure {
    int code = 0;
    std::string message = "(no error)";
};

Failure failureOf(const std::function<void()> &fn) {
    try {
        fn();
    } catch (const Error &e) {
        return {e.code(), e.what()};
    }
    return {};
}

std::vector<std::string> strs(const std::vector<Cidr> &cidrs) {
    std::vector<std::string> out;
    for (const Cidr &c : cidrs) out.push_back(c.str());
    return out;
}

std::vector<std::string> strs(const std::vector<Lease> &leases) {
    std::vector<std::string> out;
    for (const Lease &l : leases) out.push_back(l.address.str());
    return out;
}

RouteInfo route(const std::string &destination, const std::string &device) {
    return {Cidr::parse(destination, "route"), device};
}

NetworkRequest request(const std::string &name, std::vector<std::string> subnets = {},
                       std::vector<std::string> gateways = {}) {
    NetworkRequest r;
    r.name = name;
    r.subnets = std::move(subnets);
    r.gateways = std::move(gateways);
    return r;
}

class NetworksTest : public ::testing::Test {
protected:
    const Host &host() { return _core.host(); }
    Networks networks() { return Networks(host()); }

    // Run fn in n processes at once, each a command of its own (its own core and store
    // connection), released together; returns how many failed.
    int failedChildren(int n, const std::function<void(int, const Host &)> &fn) {
        int go[2];
        if (::pipe(go) != 0) return n;
        std::vector<pid_t> children;
        for (int i = 0; i < n; ++i) {
            pid_t pid = ::fork();
            if (pid == 0) {
                ::close(go[1]);
                try {
                    CoreHost own(_dir.path());
                    char c;
                    if (::read(go[0], &c, 1) < 0) ::_exit(2); // EOF when the parent closes it
                    fn(i, own.host());
                    ::_exit(0);
                } catch (const std::exception &e) {
                    std::fprintf(stderr, "child %d: %s\n", i, e.what());
                    ::_exit(1);
                }
            }
            if (pid < 0) {
                ADD_FAILURE() << "fork: " << std::strerror(errno);
                break;
            }
            children.push_back(pid);
        }
        // Closed also after a failed fork: the children waiting on it must not wait forever.
        ::close(go[0]);
        ::close(go[1]);
        int failed = n - static_cast<int>(children.size());
        for (pid_t pid : children) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        return failed;
    }

    mobileops::test::TempDir _dir; // outlives the store it holds
    CoreHost _core{_dir.path()};
};

} // namespace

TEST_F(NetworksTest, CreateWithSubnetAndGateway) {
    NetworkRequest r = request("web", {"172.20.0.0/16"}, {"172.20.0.254"});
    r.internal = true;
    r.labels = {{"team", "a"}};
    Network net = networks().create(r, {});
    EXPECT_EQ(net.name, "web");
    EXPECT_EQ(net.bridge, "mo-web");
    EXPECT_EQ(strs(net.subnets), std::vector<std::string>{"172.20.0.0/16"});
    EXPECT_EQ(strs(net.gateways), std::vector<std::string>{"172.20.0.254/16"});
    EXPECT_TRUE(net.internal);
    EXPECT_FALSE(net.created.empty());

    // What the store holds, by key and by name.
    auto doc = host().get("network", "web");
    ASSERT_TRUE(doc);
    EXPECT_EQ(*doc, net.toJson());
    EXPECT_EQ((*doc)["subnets"], json::array({"172.20.0.0/16"}));
    EXPECT_EQ((*doc)["gateways"], json::array({"172.20.0.254/16"}));
    EXPECT_EQ((*doc)["labels"]["team"], "a");
    EXPECT_EQ(host().find("network", "web"), doc);
    Network back = networks().get("web");
    EXPECT_EQ(back.toJson(), net.toJson());

    // The seed form's address with its prefix: the subnet is its network, the gateway the
    // address given.
    Network seed = networks().create(request("seed", {"172.21.0.1/16"}, {"172.21.0.1/16"}), {});
    EXPECT_EQ(strs(seed.subnets), std::vector<std::string>{"172.21.0.0/16"});
    EXPECT_EQ(strs(seed.gateways), std::vector<std::string>{"172.21.0.1/16"});
    // No gateway: the first host.
    Network plain = networks().create(request("plain", {"172.22.5.0/24"}), {});
    EXPECT_EQ(strs(plain.gateways), std::vector<std::string>{"172.22.5.1/24"});
}

TEST_F(NetworksTest, CreatePicksFreeSubnets) {
    std::vector<RouteInfo> routes = {route("0.0.0.0/0", "eth0"), route("10.91.2.0/24", "eth1"),
                                     route("::/0", "eth0")};
    EXPECT_EQ(strs(networks().create(request("a"), routes).subnets),
              std::vector<std::string>{"10.91.0.0/24"});
    Network b = networks().create(request("b", {""}), routes);
    EXPECT_EQ(strs(b.subnets), std::vector<std::string>{"10.91.1.0/24"});
    EXPECT_EQ(strs(b.gateways), std::vector<std::string>{"10.91.1.1/24"});
    // 10.91.2.0/24 is the host's; default routes overlap everything and do not count.
    EXPECT_EQ(strs(networks().create(request("c"), routes).subnets),
              std::vector<std::string>{"10.91.3.0/24"});
    // A route on the network's own bridge is a bridge a lost record left behind.
    routes.push_back(route("10.91.4.0/24", "mo-d"));
    EXPECT_EQ(strs(networks().create(request("d"), routes).subnets),
              std::vector<std::string>{"10.91.4.0/24"});
}

TEST_F(NetworksTest, CreateIpv6) {
    NetworkRequest r = request("six");
    r.ipv6 = true;
    Network six = networks().create(r, {route("fe80::/64", "eth0")});
    EXPECT_EQ(strs(six.subnets), (std::vector<std::string>{"10.91.0.0/24", "fd00:6d6f::/64"}));
    EXPECT_EQ(strs(six.gateways), (std::vector<std::string>{"10.91.0.1/24", "fd00:6d6f::1/64"}));
    r.name = "six2";
    EXPECT_EQ(strs(networks().create(r, {route("fd00:6d6f:1::/48", "eth0")}).subnets),
              (std::vector<std::string>{"10.91.1.0/24", "fd00:6d6f:2::/64"}));

    // An IPv6 subnet given turns IPv6 on; IPv4 comes first whatever the order given.
    Network given = networks().create(
        request("given", {"fd00:abcd::/64", "10.30.0.0/24"}, {"fd00:abcd::fe", ""}), {});
    EXPECT_EQ(strs(given.subnets), (std::vector<std::string>{"10.30.0.0/24", "fd00:abcd::/64"}));
    EXPECT_EQ(strs(given.gateways), (std::vector<std::string>{"10.30.0.1/24", "fd00:abcd::fe/64"}));
    // Only IPv6 given: IPv4 still picked.
    Network only = networks().create(request("only6", {"fd00:beef::/64"}), {});
    EXPECT_EQ(strs(only.subnets), (std::vector<std::string>{"10.91.2.0/24", "fd00:beef::/64"}));
    EXPECT_EQ(host().get("network", "only6")->at("subnets"),
              json::array({"10.91.2.0/24", "fd00:beef::/64"}));
}

TEST_F(NetworksTest, BridgeNames) {
    EXPECT_EQ(networks().create(request(kDefaultNetwork), {}).bridge, "mobileops0");
    // "mo-" and 12 bytes: the 15 an interface name can have.
    EXPECT_EQ(networks().create(request("twelve-chars"), {}).bridge, "mo-twelve-chars");
    // One more: FNV-1a of the name (computed independently for this name).
    EXPECT_EQ(networks().create(request("frontend-team"), {}).bridge, "mo-bc725cc9");
}

TEST_F(NetworksTest, CreateRefusals) {
    networks().create(request("web", {"172.20.0.0/16"}), {});
    std::vector<RouteInfo> routes = {route("10.0.0.0/8", "eth0"), route("0.0.0.0/0", "eth0")};
    auto refused = [&](NetworkRequest r) {
        return failureOf([&] { networks().create(r, routes); });
    };
    struct Case {
        NetworkRequest request;
        int code;
        std::string message;
    };
    NetworkRequest v6twice = request("x", {"fd00:1::/64", "fd00:2::/64"});
    std::vector<Case> cases = {
        {request("bad name"), MO_E_INVALID,
         "invalid network name `bad name`: expected 1 to 128 letters, digits, `_`, `.`, `-`, "
         "starting with a letter or digit"},
        {request(""), MO_E_INVALID,
         "invalid network name ``: expected 1 to 128 letters, digits, `_`, `.`, `-`, starting "
         "with a letter or digit"},
        {request("host"), MO_E_INVALID,
         "invalid network name `host`: reserved for the network mode"},
        {request("x", {"10.0.0.0/33"}), MO_E_INVALID,
         "invalid --subnet `10.0.0.0/33`: prefix 33 is longer than 32"},
        {request("x", {"10.300.0.0/16"}), MO_E_INVALID,
         "invalid --subnet `10.300.0.0/16`: not an IPv4 or IPv6 address"},
        {request("x", {"192.168.7.0/32"}), MO_E_INVALID,
         "invalid --subnet `192.168.7.0/32`: too small for a gateway and a container"},
        {request("x", {"192.168.7.0/24"}, {"192.168.8.1"}), MO_E_INVALID,
         "invalid --gateway `192.168.8.1`: outside subnet `192.168.7.0/24`"},
        {request("x", {"192.168.7.0/24"}, {"192.168.7.0"}), MO_E_INVALID,
         "invalid --gateway `192.168.7.0`: the network address of `192.168.7.0/24`"},
        {request("x", {"192.168.7.0/24"}, {"192.168.7.255"}), MO_E_INVALID,
         "invalid --gateway `192.168.7.255`: the broadcast address of `192.168.7.0/24`"},
        {request("x", {"192.168.7.0/24"}, {"fd00::1"}), MO_E_INVALID,
         "invalid --gateway `fd00::1`: not an IPv4 address like subnet `192.168.7.0/24`"},
        {request("x", {"192.168.7.0/24"}, {"192.168.7.1/16"}), MO_E_INVALID,
         "invalid --gateway `192.168.7.1/16`: prefix /16 is not the subnet's /24"},
        {request("x", {}, {"192.168.7.1"}), MO_E_INVALID,
         "invalid --gateway `192.168.7.1`: give its --subnet too"},
        {request("x", {"192.168.7.0/24", "192.168.8.0/24"}), MO_E_INVALID,
         "invalid --subnet `192.168.8.0/24`: a network has one IPv4 subnet at most and "
         "`192.168.7.0/24` is given too"},
        {v6twice, MO_E_INVALID,
         "invalid --subnet `fd00:2::/64`: a network has one IPv6 subnet at most and "
         "`fd00:1::/64` is given too"},
        {request("x", {"172.20.128.0/17"}), MO_E_EXISTS,
         "subnet `172.20.128.0/17` overlaps network `web` (172.20.0.0/16)"},
        {request("x", {"172.0.0.0/8"}), MO_E_EXISTS,
         "subnet `172.0.0.0/8` overlaps network `web` (172.20.0.0/16)"},
        {request("x", {"10.44.0.0/16"}), MO_E_EXISTS,
         "subnet `10.44.0.0/16` overlaps the host's route to 10.0.0.0/8 on eth0"},
        {request("web", {"192.168.7.0/24"}), MO_E_EXISTS, "network `web` already exists"},
    };
    for (const Case &c : cases) {
        Failure f = refused(c.request);
        EXPECT_EQ(f.message, c.message);
        EXPECT_EQ(f.code, c.code) << c.message;
    }
    // Nothing of the refused ones was stored.
    EXPECT_EQ(networks().list().size(), 1u);
    EXPECT_EQ(host().list("network").size(), 1u);
}

TEST_F(NetworksTest, EnsureDefault) {
    std::vector<RouteInfo> routes = {route("192.168.1.0/24", "eth0")};
    Network first = networks().ensureDefault(routes);
    EXPECT_EQ(first.name, "mobileops0");
    EXPECT_EQ(first.bridge, "mobileops0");
    EXPECT_EQ(strs(first.subnets), std::vector<std::string>{kDefaultSubnet});
    EXPECT_EQ(strs(first.gateways), std::vector<std::string>{"10.90.0.1/16"});
    Network again = networks().ensureDefault(routes);
    EXPECT_EQ(again.toJson(), first.toJson());
    EXPECT_EQ(networks().list().size(), 1u);

    // An enclosing transaction survives a call that finds the default in place.
    {
        Host::Transaction tx(host());
        networks().create(request("inside", {"10.33.0.0/16"}), routes);
        networks().ensureDefault(routes);
        tx.commit();
    }
    EXPECT_TRUE(networks().find("inside"));
}

TEST_F(NetworksTest, EnsureDefaultFromConfiguration) {
    _core.config().set("bridge.default_subnet", "10.77.0.0/16");
    EXPECT_EQ(strs(networks().ensureDefault({}).subnets), std::vector<std::string>{"10.77.0.0/16"});

    mobileops::test::TempDir other;
    CoreHost bad(other.path());
    bad.config().set("bridge.default_subnet", "10.77.0.0/99");
    Failure f = failureOf([&] { Networks(bad.host()).ensureDefault({}); });
    EXPECT_EQ(f.code, MO_E_INVALID);
    EXPECT_EQ(f.message, "invalid bridge.default_subnet `10.77.0.0/99`: prefix 99 is longer "
                         "than 32");
    // The host's route is in the way of the default subnet.
    CoreHost clash(other.path());
    f = failureOf([&] { Networks(clash.host()).ensureDefault({route("10.90.8.0/24", "eth0")}); });
    EXPECT_EQ(f.message, "subnet `10.90.0.0/16` overlaps the host's route to 10.90.8.0/24 on eth0");
}

// Concurrent first use neither fails nor makes two (the window between the check and
// the create is narrow: this rarely catches a missing transaction, it shows none fails).
TEST_F(NetworksTest, ParallelFirstUseMakesOneDefault) {
    EXPECT_EQ(failedChildren(8, [](int, const Host &host) { Networks(host).ensureDefault({}); }),
              0);
    std::vector<json> all = host().list("network");
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0]["name"], "mobileops0");
}

TEST_F(NetworksTest, ListFindGetRemove) {
    for (const char *n : {"one", "two", "three"}) networks().create(request(n), {});
    std::vector<std::string> names;
    for (const Network &n : networks().list()) names.push_back(n.name);
    EXPECT_EQ(names, (std::vector<std::string>{"one", "two", "three"}));
    EXPECT_EQ(networks().find("two")->subnets.at(0).str(), "10.91.1.0/24");
    EXPECT_FALSE(networks().find("nope"));
    Failure f = failureOf([&] { networks().get("nope"); });
    EXPECT_EQ(f.code, MO_E_NOT_FOUND);
    EXPECT_EQ(f.message, "no such network `nope`");

    networks().remove("two", false);
    EXPECT_FALSE(networks().find("two"));
    EXPECT_FALSE(host().get("network", "two"));
    EXPECT_EQ(networks().list().size(), 2u);
    f = failureOf([&] { networks().remove("two", false); });
    EXPECT_EQ(f.code, MO_E_NOT_FOUND);
    EXPECT_EQ(f.message, "no such network `two`");
    // Its subnet is free again.
    EXPECT_EQ(networks().create(request("four"), {}).subnets.at(0).str(), "10.91.1.0/24");
}

TEST_F(NetworksTest, RemoveRefusedWhileLeased) {
    networks().create(request("web", {"10.50.0.0/24"}), {});
    networks().create(request("db", {"10.51.0.0/24"}), {});
    networks().lease("web", "c1", "eth0");
    networks().lease("web", "c2", "eth0");
    networks().lease("db", "c3", "eth0");
    Failure f = failureOf([&] { networks().remove("web", false); });
    EXPECT_EQ(f.code, MO_E_STATE);
    EXPECT_EQ(f.message, "network `web` is in use by containers `c1`, `c2`");
    EXPECT_TRUE(networks().find("web"));
    EXPECT_EQ(networks().leases("web").size(), 2u);

    networks().release("c2");
    f = failureOf([&] { networks().remove("web", false); });
    EXPECT_EQ(f.message, "network `web` is in use by container `c1`");

    networks().remove("web", true);
    EXPECT_FALSE(networks().find("web"));
    EXPECT_TRUE(networks().leases("web").empty());
    // The other network's lease stays.
    std::vector<json> left = host().list("lease");
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0]["container"], "c3");
}

TEST_F(NetworksTest, LeaseLowestFreeAndWanted) {
    networks().create(request("web", {"10.50.0.0/24"}), {});
    std::vector<Lease> a = networks().lease("web", "c1", "eth0");
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].address.str(), "10.50.0.2/24");
    EXPECT_EQ(a[0].network, "web");
    EXPECT_EQ(a[0].container, "c1");
    EXPECT_EQ(a[0].interface, "eth0");
    auto doc = host().get("lease", "web/10.50.0.2");
    ASSERT_TRUE(doc);
    EXPECT_EQ(*doc, (json{{"network", "web"},
                          {"container", "c1"},
                          {"interface", "eth0"},
                          {"address", "10.50.0.2/24"}}));
    EXPECT_EQ(strs(networks().lease("web", "c2", "eth1")),
              std::vector<std::string>{"10.50.0.3/24"});
    // The same container gets its lease back, and no second record.
    EXPECT_EQ(strs(networks().lease("web", "c1", "eth0")),
              std::vector<std::string>{"10.50.0.2/24"});
    EXPECT_EQ(host().list("lease").size(), 2u);

    Cidr ten = Cidr::address("10.50.0.10", "--ip");
    EXPECT_EQ(strs(networks().lease("web", "c3", "eth0", ten)),
              std::vector<std::string>{"10.50.0.10/24"});
    EXPECT_EQ(strs(networks().lease("web", "c3", "eth0", ten)),
              std::vector<std::string>{"10.50.0.10/24"});
    struct Case {
        std::string container, wanted;
        int code;
        std::string message;
    };
    std::vector<Case> cases = {
        {"c4", "10.50.0.10", MO_E_EXISTS,
         "address `10.50.0.10` on network `web` is taken by container `c3`"},
        {"c4", "10.50.0.1", MO_E_EXISTS, "address `10.50.0.1` is the gateway of network `web`"},
        {"c4", "10.50.1.5", MO_E_INVALID,
         "invalid --ip `10.50.1.5`: outside network `web` (10.50.0.0/24)"},
        {"c4", "10.50.0.0", MO_E_INVALID,
         "invalid --ip `10.50.0.0`: the network address of `10.50.0.0/24`"},
        {"c4", "10.50.0.255", MO_E_INVALID,
         "invalid --ip `10.50.0.255`: the broadcast address of `10.50.0.0/24`"},
        {"c4", "fd00::5", MO_E_INVALID, "invalid --ip `fd00::5`: network `web` has no IPv6 subnet"},
        {"c1", "10.50.0.20", MO_E_EXISTS,
         "container `c1` already has `10.50.0.2` on network `web`"},
    };
    for (const Case &c : cases) {
        Failure f = failureOf(
            [&] { networks().lease("web", c.container, "eth0", Cidr::address(c.wanted, "--ip")); });
        EXPECT_EQ(f.message, c.message);
        EXPECT_EQ(f.code, c.code) << c.message;
    }
    Failure f = failureOf([&] { networks().lease("nope", "c4", "eth0"); });
    EXPECT_EQ(f.code, MO_E_NOT_FOUND);
    EXPECT_EQ(f.message, "no such network `nope`");
    EXPECT_EQ(host().list("lease").size(), 3u);

    // Released addresses are handed out again, lowest first.
    EXPECT_EQ(strs(networks().lease("web", "c4", "eth0")),
              std::vector<std::string>{"10.50.0.4/24"});
    std::vector<Lease> dropped = networks().release("c1");
    EXPECT_EQ(strs(dropped), std::vector<std::string>{"10.50.0.2/24"});
    EXPECT_FALSE(host().get("lease", "web/10.50.0.2"));
    EXPECT_TRUE(networks().release("c1").empty());
    EXPECT_EQ(strs(networks().lease("web", "c5", "eth0")),
              std::vector<std::string>{"10.50.0.2/24"});
    EXPECT_EQ(strs(networks().leases("web", "c5")), std::vector<std::string>{"10.50.0.2/24"});
    EXPECT_EQ(networks().leases("web").size(), 4u);
}

TEST_F(NetworksTest, LeaseSkipsAGatewayAnywhere) {
    networks().create(request("web", {"10.52.0.0/24"}, {"10.52.0.2"}), {});
    EXPECT_EQ(strs(networks().lease("web", "c1", "eth0")),
              std::vector<std::string>{"10.52.0.1/24"});
    EXPECT_EQ(strs(networks().lease("web", "c2", "eth0")),
              std::vector<std::string>{"10.52.0.3/24"});
}

TEST_F(NetworksTest, LeaseBothFamiliesInOneTransaction) {
    NetworkRequest r = request("dual");
    r.ipv6 = true;
    networks().create(r, {});
    std::vector<Lease> l = networks().lease("dual", "c1", "eth0");
    EXPECT_EQ(strs(l), (std::vector<std::string>{"10.91.0.2/24", "fd00:6d6f::2/64"}));
    EXPECT_TRUE(host().get("lease", "dual/fd00:6d6f::2"));
    Cidr wanted = Cidr::address("fd00:6d6f::99", "--ip");
    EXPECT_EQ(strs(networks().lease("dual", "c2", "eth0", wanted)),
              (std::vector<std::string>{"10.91.0.3/24", "fd00:6d6f::99/64"}));
    // The IPv6 address is taken after the IPv4 one was written: neither stays.
    Failure f = failureOf([&] { networks().lease("dual", "c3", "eth0", wanted); });
    EXPECT_EQ(f.message, "address `fd00:6d6f::99` on network `dual` is taken by container `c2`");
    EXPECT_TRUE(networks().leases("dual", "c3").empty());
    EXPECT_EQ(host().list("lease").size(), 4u);
    EXPECT_EQ(strs(networks().release("c2", "dual")),
              (std::vector<std::string>{"10.91.0.3/24", "fd00:6d6f::99/64"}));
}

TEST_F(NetworksTest, FullNetworkHasNoSpace) {
    // A /30: two usable addresses, one the gateway's.
    networks().create(request("tiny", {"192.168.50.0/30"}), {});
    EXPECT_EQ(strs(networks().lease("tiny", "c1", "eth0")),
              std::vector<std::string>{"192.168.50.2/30"});
    Failure f = failureOf([&] { networks().lease("tiny", "c2", "eth0"); });
    EXPECT_EQ(f.code, -ENOSPC);
    EXPECT_EQ(f.message, "network `tiny` has no free address");
    EXPECT_EQ(host().list("lease").size(), 1u);
    // A point-to-point /31 holds the gateway and one container too.
    networks().create(request("p2p", {"192.168.51.0/31"}), {});
    EXPECT_EQ(strs(networks().lease("p2p", "c1", "eth1")),
              std::vector<std::string>{"192.168.51.1/31"});
    EXPECT_EQ(failureOf([&] { networks().lease("p2p", "c2", "eth0"); }).code, -ENOSPC);
}

TEST_F(NetworksTest, TwentyProcessesLeaseAtOnce) {
    networks().create(request("par", {"10.60.0.0/24"}), {});
    EXPECT_EQ(failedChildren(20,
                             [](int i, const Host &host) {
                                 Networks(host).lease("par", "c" + std::to_string(i), "eth0");
                             }),
              0);

    // Read back through a fresh connection to the database.
    CoreHost reader(_dir.path());
    std::vector<Lease> all = Networks(reader.host()).leases("par");
    ASSERT_EQ(all.size(), 20u);
    std::set<std::string> addresses, containers;
    for (const Lease &l : all) {
        addresses.insert(l.address.str());
        containers.insert(l.container);
    }
    EXPECT_EQ(addresses.size(), 20u);
    EXPECT_EQ(containers.size(), 20u);
    // Distinct and dense: .2 to .21.
    for (int i = 2; i <= 21; ++i)
        EXPECT_TRUE(addresses.count("10.60.0." + std::to_string(i) + "/24")) << i;
}

TEST_F(NetworksTest, ThousandLeasesInASlash16) {
    networks().create(request("big", {"10.70.0.0/16"}), {});
    {
        // One transaction for the setup only: 1000 commits would measure the disk.
        Host::Transaction tx(host());
        for (int i = 0; i < 1000; ++i) networks().lease("big", "c" + std::to_string(i), "eth0");
        tx.commit();
    }
    ASSERT_EQ(host().list("lease").size(), 1000u);
    Cidr subnet = Cidr::parse("10.70.0.0/16", "subnet");
    // c0 has host(2) (host(1) is the gateway): c499 has host(501).
    EXPECT_EQ(strs(networks().leases("big", "c499")), std::vector<std::string>{"10.70.1.245/16"});
    networks().release("c499");

    mo_host_api counted = countingApi(_core.api());
    Host countingHost(&counted, _core.plugin());
    Networks n(countingHost);
    storeCalls = 0;
    auto start = std::chrono::steady_clock::now();
    std::vector<Lease> gap = n.lease("big", "new1", "eth0");
    auto took = std::chrono::steady_clock::now() - start;
    int calls = storeCalls;
    EXPECT_EQ(strs(gap), std::vector<std::string>{"10.70.1.245/16"});
    // The network, the leases in one list, the new lease: never one call per address.
    EXPECT_LE(calls, 3);
    storeCalls = 0;
    std::vector<Lease> next = n.lease("big", "new2", "eth0");
    EXPECT_LE(storeCalls.load(), 3);
    Cidr expected = *subnet.host(1002);
    expected.prefix = 16;
    EXPECT_EQ(strs(next), std::vector<std::string>{expected.str()});
    EXPECT_EQ(next[0].address.str(), "10.70.3.234/16");
    std::cout << "[ measured ] lease with 1000 taken in a /16: "
              << std::chrono::duration<double, std::milli>(took).count() << " ms, " << calls
              << " store calls" << std::endl;
}
