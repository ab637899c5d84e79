// Netlink against the real kernel, every test in a network namespace of its own: bridges,
// veth pairs into another process's namespace, addresses, routes, real UDP traffic across
// the bridge, counters, sysctls; read back through iproute2 and /proc.
#include "Netlink.h"
#include "BridgeTestSupport.h"
#include "NetnsFixture.h"
#include "TestUtil.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace mobileops::bridge {
namespace {

using json = nlohmann::json;
using test::inFreshNetns;
using test::NetnsChild;

json ip(const std::vector<std::string> &args) {
    std::vector<std::string> argv = {"/usr/sbin/ip", "-j"};
    argv.insert(argv.end(), args.begin(), args.end());
    test::Result r = test::run(argv);
    if (r.status != 0) return json();
    return json::parse(r.out, nullptr, false);
}

json linkJson(const std::string &name) {
    json j = ip({"-d", "link", "show", "dev", name});
    return j.is_array() && !j.empty() ? j[0] : json();
}

bool hasFlag(const json &link, const std::string &flag) {
    if (!link.contains("flags")) return false;
    for (auto &f : link["flags"])
        if (f == flag) return true;
    return false;
}

std::vector<std::string> addresses(const std::string &link) {
    std::vector<std::string> out;
    json j = ip({"addr", "show", "dev", link});
    if (!j.is_array() || j.empty()) return out;
    for (auto &a : j[0]["addr_info"])
        out.push_back(a["local"].get<std::string>() + "/" +
                      std::to_string(a["prefixlen"].get<int>()));
    return out;
}

bool contains(const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The error a call throws ("" when none), and its code.
template <typename F> std::string errorOf(F &&f, int *code = nullptr) {
    try {
        f();
    } catch (const sdk::Error &e) {
        if (code) *code = e.code();
        return e.what();
    }
    return "";
}

std::string readFile(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    std::string out = s.str();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

ino_t nsInode(const std::string &path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

Cidr cidr(const std::string &text) { return Cidr::parse(text, "test"); }

bool hasRoute(const std::vector<RouteInfo> &routes, const std::string &dst,
              const std::string &dev) {
    for (auto &r : routes)
        if (r.destination.str() == dst && r.device == dev) return true;
    return false;
}

std::string describe(const std::vector<RouteInfo> &routes) {
    std::string out;
    for (auto &r : routes) out += r.destination.str() + " dev " + r.device + "; ";
    return out;
}

// Sends from `client` (a socket of the container's namespace) to `server` until a datagram
// arrives (the first ones may go before the neighbour is resolved); then a reply back.
// Returns the sender's address as the server saw it, "" on failure.
std::string udpExchange(int family, int client, int server) {
    sockaddr_storage to{};
    socklen_t toLen = sizeof to;
    if (::getsockname(server, reinterpret_cast<sockaddr *>(&to), &toLen) != 0) return "";
    timeval tv{0, 200000};
    ::setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64];
    sockaddr_storage from{};
    socklen_t fromLen = 0;
    bool got = false;
    for (int attempt = 0; attempt < 25 && !got; ++attempt) {
        if (::sendto(client, "ping", 4, 0, reinterpret_cast<sockaddr *>(&to), toLen) != 4)
            return "";
        fromLen = sizeof from;
        ssize_t n =
            ::recvfrom(server, buf, sizeof buf, 0, reinterpret_cast<sockaddr *>(&from), &fromLen);
        got = n == 4 && std::memcmp(buf, "ping", 4) == 0;
    }
    if (!got) return "";
    if (::sendto(server, "pong", 4, 0, reinterpret_cast<sockaddr *>(&from), fromLen) != 4)
        return "";
    if (::recv(client, buf, sizeof buf, 0) != 4 || std::memcmp(buf, "pong", 4) != 0) return "";
    char text[INET6_ADDRSTRLEN] = {};
    const void *addr =
        family == AF_INET
            ? static_cast<const void *>(&reinterpret_cast<sockaddr_in *>(&from)->sin_addr)
            : static_cast<const void *>(&reinterpret_cast<sockaddr_in6 *>(&from)->sin6_addr);
    ::inet_ntop(family, addr, text, sizeof text);
    return text;
}

int boundUdp(int family, const std::string &address) {
    int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
        auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
        sin->sin_family = AF_INET;
        ::inet_pton(AF_INET, address.c_str(), &sin->sin_addr);
        len = sizeof *sin;
    } else {
        auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
        sin6->sin6_family = AF_INET6;
        ::inet_pton(AF_INET6, address.c_str(), &sin6->sin6_addr);
        len = sizeof *sin6;
    }
    if (::bind(fd, reinterpret_cast<sockaddr *>(&ss), len) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

struct FdGuard {
    int fd;
    ~FdGuard() {
        if (fd >= 0) ::close(fd);
    }
};

TEST(Netlink, EnsureBridgeCreatesAndIsIdempotent) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Netlink nl;
        EXPECT_FALSE(nl.exists("mo-t0"));
        std::vector<Cidr> addrs = {cidr("10.5.0.1/24"), cidr("fd00:5::1/64")};
        nl.ensureBridge("mo-t0", addrs);
        EXPECT_TRUE(nl.exists("mo-t0"));
        json link = linkJson("mo-t0");
        ASSERT_TRUE(link.is_object());
        EXPECT_EQ(link["linkinfo"]["info_kind"], "bridge");
        EXPECT_TRUE(hasFlag(link, "UP"));
        std::string mac = link["address"];
        auto before = addresses("mo-t0");
        EXPECT_TRUE(contains(before, "10.5.0.1/24"));
        EXPECT_TRUE(contains(before, "fd00:5::1/64"));

        nl.ensureBridge("mo-t0", addrs);
        nl.ensureBridge("mo-t0", {cidr("10.5.0.1/24")});
        auto after = addresses("mo-t0");
        EXPECT_EQ(std::count(after.begin(), after.end(), "10.5.0.1/24"), 1);
        EXPECT_EQ(std::count(after.begin(), after.end(), "fd00:5::1/64"), 1);
        EXPECT_EQ(after.size(), before.size());
        EXPECT_EQ(linkJson("mo-t0")["address"], mac);
        // IPv6 duplicate address detection is off for our addresses: usable at once.
        json a6 = ip({"-6", "addr", "show", "dev", "mo-t0"});
        ASSERT_TRUE(a6.is_array() && !a6.empty());
        for (auto &a : a6[0]["addr_info"])
            if (a["local"] == "fd00:5::1") {
                EXPECT_FALSE(a.contains("tentative")) << a.dump();
            }

        // A bridge made elsewhere, down and without the address: adopted and completed.
        ASSERT_EQ(test::run({"/usr/sbin/ip", "link", "add", "mo-t1", "type", "bridge"}).status, 0);
        nl.ensureBridge("mo-t1", {cidr("10.6.0.1/24")});
        EXPECT_TRUE(hasFlag(linkJson("mo-t1"), "UP"));
        EXPECT_TRUE(contains(addresses("mo-t1"), "10.6.0.1/24"));

        EXPECT_EQ(nl.links("mo-t"), (std::vector<std::string>{"mo-t0", "mo-t1"}));
        EXPECT_TRUE(contains(nl.links(""), "lo"));
        EXPECT_TRUE(nl.links("nothing-").empty());
    });
}

TEST(Netlink, EnsureBridgeRefusesALinkThatIsNotABridge) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        ASSERT_EQ(test::run({"/usr/sbin/ip", "link", "add", "mo-v0", "type", "veth", "peer", "name",
                             "mo-v1"})
                      .status,
                  0);
        Netlink nl;
        int code = 0;
        EXPECT_EQ(errorOf([&] { nl.ensureBridge("mo-v0", {cidr("10.5.0.1/24")}); }, &code),
                  "create the bridge `mo-v0`: a link of that name exists and is a veth, not a "
                  "bridge");
        EXPECT_EQ(code, MO_E_EXISTS);
        EXPECT_TRUE(addresses("mo-v0").empty()); // untouched
        EXPECT_FALSE(hasFlag(linkJson("mo-v0"), "UP"));

        EXPECT_EQ(errorOf([&] { nl.ensureBridge("mo-bridge-name-too-long", {}); }, &code),
                  "invalid link name `mo-bridge-name-too-long`: longer than 15 bytes");
        EXPECT_EQ(code, MO_E_INVALID);
    });
}

TEST(Netlink, VethIntoAnotherNamespaceCarriesTraffic) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        Netlink nl;
        nl.ensureBridge("mo-t0", {cidr("10.5.0.1/24"), cidr("fd00:5::1/64")});
        std::string bridgeMac = linkJson("mo-t0")["address"];

        nl.createVeth("veth-t0", "tmp-t0", "mo-t0", child.pid());
        json host = linkJson("veth-t0");
        ASSERT_TRUE(host.is_object());
        EXPECT_EQ(host["master"], "mo-t0");
        EXPECT_TRUE(hasFlag(host, "UP"));
        EXPECT_EQ(host["linkinfo"]["info_kind"], "veth");
        EXPECT_FALSE(nl.exists("tmp-t0")); // it went to the child's namespace
        EXPECT_EQ(linkJson("mo-t0")["address"], bridgeMac);

        int client4 = -1, client6 = -1;
        inNetworkNamespaceOf(child.pid(), [&] {
            Netlink inside;
            ASSERT_TRUE(inside.exists("tmp-t0"));
            EXPECT_FALSE(inside.exists("veth-t0"));
            EXPECT_FALSE(inside.exists("mo-t0"));
            inside.rename("tmp-t0", "eth0");
            inside.addAddress("eth0", cidr("10.5.0.2/24"));
            inside.addAddress("eth0", cidr("fd00:5::2/64"));
            inside.setUp("eth0");
            inside.setUp("lo");
            inside.addRoute(cidr("0.0.0.0/0"), "10.5.0.1", "eth0");
            inside.addRoute(cidr("::/0"), "fd00:5::1", "eth0");
            EXPECT_FALSE(inside.exists("tmp-t0"));

            auto routes = inside.routes(AF_INET);
            EXPECT_TRUE(hasRoute(routes, "0.0.0.0/0", "eth0")) << describe(routes);
            EXPECT_TRUE(hasRoute(routes, "10.5.0.0/24", "eth0")) << describe(routes);
            auto routes6 = inside.routes(AF_INET6);
            EXPECT_TRUE(hasRoute(routes6, "::/0", "eth0")) << describe(routes6);
            EXPECT_TRUE(hasRoute(routes6, "fd00:5::/64", "eth0")) << describe(routes6);
            // iproute2 agrees, seen from the child's namespace.
            json r = ip({"route", "show", "default"});
            ASSERT_TRUE(r.is_array() && r.size() == 1) << r.dump();
            EXPECT_EQ(r[0]["gateway"], "10.5.0.1");
            EXPECT_EQ(r[0]["dev"], "eth0");
            // Sockets stay in the namespace they were made in.
            client4 = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            client6 = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        });
        FdGuard c4{client4}, c6{client6};
        ASSERT_GE(client4, 0);
        ASSERT_GE(client6, 0);
        EXPECT_TRUE(nl.exists("veth-t0")); // back in our namespace

        LinkCounters before = nl.counters("veth-t0");
        LinkCounters bridgeBefore = nl.counters("mo-t0");
        FdGuard server4{boundUdp(AF_INET, "10.5.0.1")};
        FdGuard server6{boundUdp(AF_INET6, "fd00:5::1")};
        ASSERT_GE(server4.fd, 0);
        ASSERT_GE(server6.fd, 0);
        EXPECT_EQ(udpExchange(AF_INET, client4, server4.fd), "10.5.0.2");
        EXPECT_EQ(udpExchange(AF_INET6, client6, server6.fd), "fd00:5::2");
        // And ICMP, from a process in the child's namespace.
        if (::access("/usr/bin/busybox", X_OK) == 0) {
            test::Result ping = test::run(
                {"/usr/bin/nsenter", "--net=/proc/" + std::to_string(child.pid()) + "/ns/net",
                 "/usr/bin/busybox", "ping", "-c", "1", "-W", "2", "10.5.0.1"});
            EXPECT_EQ(ping.status, 0) << ping.out << ping.err;
        }

        LinkCounters after = nl.counters("veth-t0");
        LinkCounters bridgeAfter = nl.counters("mo-t0");
        // What the container sent is what the host end received, and the other way round.
        EXPECT_GE(after.rxPackets, before.rxPackets + 2);
        EXPECT_GE(after.txPackets, before.txPackets + 2);
        EXPECT_GT(after.rxBytes, before.rxBytes);
        EXPECT_GT(after.txBytes, before.txBytes);
        EXPECT_GE(bridgeAfter.rxPackets, bridgeBefore.rxPackets + 2);
        EXPECT_EQ(after.rxErrors, 0u);
        EXPECT_EQ(after.txErrors, 0u);
        std::printf("veth-t0 counters after one UDP exchange per family: rx %llu packets "
                    "%llu bytes, tx %llu packets %llu bytes\n",
                    static_cast<unsigned long long>(after.rxPackets - before.rxPackets),
                    static_cast<unsigned long long>(after.rxBytes - before.rxBytes),
                    static_cast<unsigned long long>(after.txPackets - before.txPackets),
                    static_cast<unsigned long long>(after.txBytes - before.txBytes));

        // Deleting the host end takes the container's end with it.
        nl.remove("veth-t0");
        EXPECT_FALSE(nl.exists("veth-t0"));
        inNetworkNamespaceOf(child.pid(), [] { EXPECT_FALSE(Netlink().exists("eth0")); });
    });
}

TEST(Netlink, RoutesListTheBridgesConnectedRoutes) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Netlink nl;
        EXPECT_TRUE(nl.routes(AF_INET).empty()) << describe(nl.routes(AF_INET));
        nl.ensureBridge("mo-t0", {cidr("10.5.0.1/24"), cidr("fd00:5::1/64")});
        auto routes = nl.routes(AF_INET);
        EXPECT_TRUE(hasRoute(routes, "10.5.0.0/24", "mo-t0")) << describe(routes);
        // Local and broadcast routes live in the local table: not listed.
        for (auto &r : routes) EXPECT_NE(r.destination.str(), "10.5.0.1/32");
        for (auto &r : routes) EXPECT_EQ(r.destination.family, AF_INET);
        auto routes6 = nl.routes(AF_INET6);
        EXPECT_TRUE(hasRoute(routes6, "fd00:5::/64", "mo-t0")) << describe(routes6);
        for (auto &r : routes6) EXPECT_EQ(r.destination.family, AF_INET6);

        nl.remove("mo-t0");
        EXPECT_FALSE(hasRoute(nl.routes(AF_INET), "10.5.0.0/24", "mo-t0"));
        int code = 0;
        EXPECT_EQ(errorOf([&] { nl.routes(AF_UNIX); }, &code),
                  "list the routes: unknown address family 1");
        EXPECT_EQ(code, MO_E_INVALID);
    });
}

TEST(Netlink, RemoveDeletesAndAbsentIsFine) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Netlink nl;
        nl.ensureBridge("mo-t0", {});
        ASSERT_TRUE(nl.exists("mo-t0"));
        nl.remove("mo-t0");
        EXPECT_FALSE(nl.exists("mo-t0"));
        EXPECT_FALSE(linkJson("mo-t0").is_object());
        EXPECT_NO_THROW(nl.remove("mo-t0"));
        EXPECT_NO_THROW(nl.remove("never-was"));
        EXPECT_NO_THROW(nl.remove("a-name-far-too-long-for-a-link"));
        EXPECT_FALSE(nl.exists("a-name-far-too-long-for-a-link"));
    });
}

TEST(Netlink, ErrorsNameTheLinkAndTheReason) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Netlink nl;
        int code = 0;
        EXPECT_EQ(errorOf([&] { nl.setUp("nope0"); }, &code), "bring up `nope0`: no such link");
        EXPECT_EQ(code, MO_E_NOT_FOUND);
        EXPECT_EQ(errorOf([&] { nl.addAddress("nope0", cidr("10.0.0.1/24")); }),
                  "add the address 10.0.0.1/24 to `nope0`: no such link");
        EXPECT_EQ(errorOf([&] { nl.rename("nope0", "eth0"); }),
                  "rename `nope0` to `eth0`: no such link");
        EXPECT_EQ(errorOf([&] { nl.counters("nope0"); }),
                  "read the counters of `nope0`: no such link");
        EXPECT_EQ(errorOf([&] { nl.addRoute(cidr("0.0.0.0/0"), "10.0.0.1", "nope0"); }),
                  "add the route to 0.0.0.0/0 via 10.0.0.1 on `nope0`: no such link");
        EXPECT_EQ(errorOf([&] { nl.createVeth("veth-x", "tmp-x", "nobridge", ::getpid()); }, &code),
                  "create the veth pair `veth-x` (peer `tmp-x` in the network namespace of pid " +
                      std::to_string(::getpid()) + "): no such bridge `nobridge`");
        EXPECT_EQ(code, MO_E_NOT_FOUND);
        EXPECT_EQ(errorOf([&] { nl.createVeth("veth-0123456789ab", "tmp-x", "mo-t0", 1); }, &code),
                  "invalid link name `veth-0123456789ab`: longer than 15 bytes");
        EXPECT_EQ(code, MO_E_INVALID);
        EXPECT_EQ(errorOf([&] { nl.rename("lo", "a/b"); }),
                  "invalid link name `a/b`: contains `/`, `:` or a space");

        // The kernel's reasons, with errno as the code.
        nl.ensureBridge("mo-t0", {cidr("10.5.0.1/24")});
        EXPECT_EQ(errorOf([&] { nl.addAddress("mo-t0", cidr("10.5.0.1/24")); }, &code),
                  "add the address 10.5.0.1/24 to `mo-t0`: File exists (ipv4: Address already "
                  "assigned)");
        EXPECT_EQ(code, -EEXIST);
        ASSERT_EQ(test::run({"/usr/sbin/ip", "link", "add", "mo-v0", "type", "veth", "peer", "name",
                             "mo-v1"})
                      .status,
                  0);
        EXPECT_EQ(errorOf([&] { nl.rename("mo-v0", "mo-v1"); }, &code),
                  "rename `mo-v0` to `mo-v1`: File exists");
        EXPECT_EQ(code, -EEXIST);
        std::string unreachable =
            errorOf([&] { nl.addRoute(cidr("10.7.0.0/16"), "10.9.9.9", "mo-t0"); }, &code);
        EXPECT_EQ(unreachable.rfind("add the route to 10.7.0.0/16 via 10.9.9.9 on `mo-t0`: "
                                    "Network is unreachable",
                                    0),
                  0u)
            << unreachable;
        EXPECT_EQ(code, -ENETUNREACH);
        std::printf("kernel reason with extended ack: %s\n", unreachable.c_str());
        EXPECT_EQ(errorOf([&] { nl.addRoute(cidr("10.7.0.0/16"), "fd00::1", "mo-t0"); }, &code),
                  "invalid gateway `fd00::1`: not of the family of the destination 10.7.0.0/16");
        EXPECT_EQ(code, MO_E_INVALID);
        EXPECT_EQ(errorOf([&] { nl.addRoute(cidr("10.7.0.0/16"), "10.5.0.0/24", "mo-t0"); }),
                  "invalid gateway `10.5.0.0/24`: expected an address without a prefix");

        // Into a namespace that is gone: nothing is left behind on our side.
        pid_t gone = ::fork();
        if (gone == 0) ::_exit(0);
        ::waitpid(gone, nullptr, 0);
        std::string err =
            errorOf([&] { nl.createVeth("veth-gone", "tmp-gone", "mo-t0", gone); }, &code);
        EXPECT_EQ(err, "create the veth pair `veth-gone` (peer `tmp-gone` in the network namespace "
                       "of pid " +
                           std::to_string(gone) + "): No such process");
        EXPECT_EQ(code, -ESRCH);
        EXPECT_FALSE(nl.exists("veth-gone"));
        EXPECT_FALSE(nl.exists("tmp-gone"));

        // The peer's name taken inside the container: the whole pair fails.
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        nl.createVeth("veth-a", "tmp-a", "mo-t0", child.pid());
        err = errorOf([&] { nl.createVeth("veth-b", "tmp-a", "mo-t0", child.pid()); }, &code);
        EXPECT_EQ(err.rfind("create the veth pair `veth-b` (peer `tmp-a` in the network namespace "
                            "of pid " +
                                std::to_string(child.pid()) + "): File exists",
                            0),
                  0u)
            << err;
        EXPECT_FALSE(nl.exists("veth-b"));
        EXPECT_TRUE(nl.exists("veth-a"));
    });
}

TEST(Netlink, InNetworkNamespaceOfReturnsAlsoWhenFnThrows) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        std::string self = "/proc/thread-self/ns/net";
        ino_t home = nsInode(self);
        ino_t theirs = nsInode("/proc/" + std::to_string(child.pid()) + "/ns/net");
        ASSERT_NE(home, 0u);
        ASSERT_NE(home, theirs);
        // Our namespace is the thread's, not the main thread's.
        EXPECT_NE(home, nsInode("/proc/self/ns/net"));

        ino_t seen = 0;
        inNetworkNamespaceOf(child.pid(), [&] { seen = nsInode(self); });
        EXPECT_EQ(seen, theirs);
        EXPECT_EQ(nsInode(self), home);

        EXPECT_THROW(inNetworkNamespaceOf(child.pid(),
                                          [&] {
                                              Netlink().ensureBridge("mo-inside", {});
                                              throw std::runtime_error("stop");
                                          }),
                     std::runtime_error);
        EXPECT_EQ(nsInode(self), home);
        Netlink nl;
        EXPECT_FALSE(nl.exists("mo-inside"));
        inNetworkNamespaceOf(child.pid(), [] { EXPECT_TRUE(Netlink().exists("mo-inside")); });

        int code = 0;
        EXPECT_EQ(errorOf([] { inNetworkNamespaceOf(2147483647, [] {}); }, &code),
                  "enter the network namespace of pid 2147483647: no such process");
        EXPECT_EQ(code, MO_E_NOT_FOUND);
        EXPECT_EQ(nsInode(self), home);
    });
}

TEST(Netlink, SysctlsFollowTheCallingThreadsNamespace) {
    REQUIRE_ROOT_FOR_NETNS();
    std::string hostForward = readFile("/proc/sys/net/ipv4/ip_forward");
    ASSERT_FALSE(hostForward.empty());
    inFreshNetns([] {
        Netlink nl;
        nl.ensureBridge("mo-sysctl0", {});
        // /proc/net follows the main thread (still in the machine's namespace), so this
        // thread's bridge is not there, while /proc/thread-self/net has it.
        EXPECT_EQ(readFile("/proc/self/net/dev").find("mo-sysctl0"), std::string::npos);
        EXPECT_NE(readFile("/proc/thread-self/net/dev").find("mo-sysctl0"), std::string::npos);

        // The bridge exists only in this thread's namespace, so a write that lands proves
        // /proc/sys/net resolves against the calling thread.
        std::string key = "ipv4/conf/mo-sysctl0/route_localnet";
        ASSERT_EQ(readFile("/proc/sys/net/" + key), "0");
        setNetSysctl(key, "1");
        ASSERT_EQ(readFile("/proc/sys/net/" + key), "1");

        setNetSysctl("ipv4/ip_forward", "0");
        EXPECT_EQ(readFile("/proc/sys/net/ipv4/ip_forward"), "0");
        setNetSysctl("ipv4/ip_forward", "1");
        EXPECT_EQ(readFile("/proc/sys/net/ipv4/ip_forward"), "1");

        // A second namespace on another thread has its own values.
        std::string other;
        test::inFreshNetns(
            [&] { other = readFile("/proc/sys/net/ipv4/conf/mo-sysctl0/route_localnet"); });
        EXPECT_EQ(other, "");

        int code = 0;
        EXPECT_EQ(errorOf([] { setNetSysctl("ipv4/nope", "1"); }, &code),
                  "set the sysctl `net/ipv4/nope` to `1`: No such file or directory");
        EXPECT_EQ(code, -ENOENT);
        EXPECT_EQ(errorOf([] { setNetSysctl("ipv4/ip_forward", "x"); }, &code),
                  "set the sysctl `net/ipv4/ip_forward` to `x`: Invalid argument");
        for (std::string bad :
             {"", "../../kernel/hostname", "/ipv4/ip_forward", "ipv4//x", "ipv4/"}) {
            EXPECT_EQ(errorOf([&] { setNetSysctl(bad, "1"); }, &code),
                      "invalid sysctl `net/" + bad + "`: not a key below net/");
            EXPECT_EQ(code, MO_E_INVALID);
        }
    });
    EXPECT_EQ(readFile("/proc/sys/net/ipv4/ip_forward"), hostForward);
}

TEST(Netlink, SocketsAreCloseOnExec) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        auto fds = [] {
            std::set<int> out;
            DIR *d = ::opendir("/proc/thread-self/fd");
            while (dirent *e = d ? ::readdir(d) : nullptr)
                if (e->d_name[0] != '.') out.insert(std::atoi(e->d_name));
            if (d) ::closedir(d);
            // Drop the listing's own descriptor, closed by now.
            std::erase_if(out, [](int fd) { return ::fcntl(fd, F_GETFD) < 0; });
            return out;
        };
        std::set<int> before = fds();
        Netlink nl;
        nl.exists("lo");
        int fresh = 0;
        for (int fd : fds()) {
            if (before.count(fd)) continue;
            int flags = ::fcntl(fd, F_GETFD);
            ++fresh;
            EXPECT_TRUE(flags & FD_CLOEXEC) << "fd " << fd;
        }
        EXPECT_GE(fresh, 1);
    });
}

} // namespace
} // namespace mobileops::bridge
