// Nft against the real nftables of a throwaway network namespace: what each call leaves in
// the table is read back both through Nft::table() (nft's JSON) and through `nft list` run
// in the same namespace, and one test sends real TCP and UDP through the DNAT rules.
#include "Nft.h"
#include "Cidr.h"
#include "NetnsFixture.h"
#include "TestUtil.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

using namespace mobileops::bridge;
using mobileops::sdk::Error;
using mobileops::test::inFreshNetns;
using mobileops::test::run;

namespace {

const std::string kNft = "/usr/sbin/nft";
const std::string kIp = "/usr/sbin/ip";

NetworkRules network(const std::string &name, const std::string &bridge,
                     const std::vector<std::string> &subnets, bool internal = false) {
    NetworkRules n{name, bridge, {}, internal};
    for (auto &s : subnets) n.subnets.push_back(Cidr::parse(s, "subnet"));
    return n;
}

// The rules of `owner` in `chain` as `nft list` prints them, without the comment.
std::vector<std::string> rules(const std::string &chain, const std::string &owner) {
    auto r = run({kNft, "list", "chain", "inet", "mobileops", chain});
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<std::string> out;
    std::istringstream in(r.out);
    std::string tag = " comment \"mobileops:" + owner + "\"";
    for (std::string line; std::getline(in, line);) {
        auto at = line.find(tag);
        if (at == std::string::npos) continue;
        auto begin = line.find_first_not_of(" \t");
        out.push_back(line.substr(begin, at - begin));
    }
    return out;
}

// From the JSON of Nft::table(): rules per owner, the chains, the `bridges` set.
size_t countRules(const nlohmann::json &table, const std::string &owner) {
    size_t n = 0;
    for (auto &item : table.value("nftables", nlohmann::json::array()))
        if (item.contains("rule") && item["rule"].value("comment", "") == "mobileops:" + owner) ++n;
    return n;
}

std::vector<std::string> chains(const nlohmann::json &table) {
    std::vector<std::string> out;
    for (auto &item : table.value("nftables", nlohmann::json::array()))
        if (item.contains("chain"))
            out.push_back(item["chain"]["name"].get<std::string>() + " " +
                          item["chain"].value("hook", "") + " " + item["chain"].value("type", ""));
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> bridges(const nlohmann::json &table) {
    std::vector<std::string> out;
    for (auto &item : table.value("nftables", nlohmann::json::array()))
        if (item.contains("set") && item["set"]["name"] == "bridges")
            for (auto &e : item["set"].value("elem", nlohmann::json::array()))
                out.push_back(e.is_string() ? e.get<std::string>()
                                            : e["elem"]["val"].get<std::string>());
    std::sort(out.begin(), out.end());
    return out;
}

using Rules = std::vector<std::string>;

} // namespace

TEST(Nft, SetNetworkCreatesTableChainsAndRules) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        EXPECT_EQ(nft.table(), nlohmann::json::object());
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24", "fd00:91:1::/64"}));

        auto t = nft.table();
        EXPECT_EQ(chains(t), (Rules{"forward forward filter", "output output nat",
                                    "postrouting postrouting nat", "prerouting prerouting nat"}));
        EXPECT_EQ(bridges(t), Rules{"mo-red"});
        EXPECT_EQ(countRules(t, "net:red"), 5u);
        EXPECT_EQ(rules("postrouting", "net:red"),
                  (Rules{"ip saddr 10.91.1.0/24 ip daddr != 10.91.1.0/24 masquerade",
                         "ip6 saddr fd00:91:1::/64 ip6 daddr != fd00:91:1::/64 masquerade",
                         "oifname \"mo-red\" ip saddr 127.0.0.0/8 masquerade"}));
        EXPECT_EQ(rules("forward", "net:red"),
                  (Rules{"iifname \"mo-red\" oifname \"mo-red\" accept",
                         "iifname \"mo-red\" oifname @bridges oifname != \"mo-red\" drop"}));
        // The base accepts come before every drop of ours.
        EXPECT_EQ(rules("forward", "base"),
                  (Rules{"ct state established,related accept", "ct status dnat accept"}));
        auto all = run({kNft, "list", "chain", "inet", "mobileops", "forward"}).out;
        EXPECT_LT(all.find("established,related"), all.find("drop")) << all;
    });
}

TEST(Nft, SetNetworkTwiceAddsNoDuplicates) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        auto red = network("red", "mo-red", {"10.91.1.0/24"});
        nft.setNetwork(red);
        auto first = nft.table();
        nft.setNetwork(red);
        Nft other; // a second context (another command) sees the same table
        other.setNetwork(red);
        auto t = nft.table();
        EXPECT_EQ(countRules(t, "net:red"), countRules(first, "net:red"));
        EXPECT_EQ(countRules(t, "base"), 2u);
        EXPECT_EQ(bridges(t), Rules{"mo-red"});
        EXPECT_EQ(rules("postrouting", "net:red").size(), 2u);
    });
}

TEST(Nft, SetNetworkReplacesWhenItChanges) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}, true));
        EXPECT_EQ(rules("postrouting", "net:red"),
                  Rules{"oifname \"mo-red\" ip saddr 127.0.0.0/8 masquerade"});
        EXPECT_EQ(rules("forward", "net:red"),
                  (Rules{"iifname \"mo-red\" oifname \"mo-red\" accept",
                         "iifname \"mo-red\" oifname @bridges oifname != \"mo-red\" drop",
                         "iifname \"mo-red\" oifname != \"mo-red\" drop",
                         "oifname \"mo-red\" iifname != \"mo-red\" drop"}));

        // Back to external, on another bridge and subnet: the old bridge leaves the set.
        nft.setNetwork(network("red", "mo-red2", {"10.91.2.0/24"}));
        EXPECT_EQ(rules("postrouting", "net:red"),
                  (Rules{"ip saddr 10.91.2.0/24 ip daddr != 10.91.2.0/24 masquerade",
                         "oifname \"mo-red2\" ip saddr 127.0.0.0/8 masquerade"}));
        EXPECT_EQ(rules("forward", "net:red").size(), 2u);
        EXPECT_EQ(bridges(nft.table()), Rules{"mo-red2"});
    });
}

TEST(Nft, TwoNetworksAreIsolatedFromEachOther) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
        nft.setNetwork(network("blue", "mo-blue", {"10.91.2.0/24"}));
        EXPECT_EQ(bridges(nft.table()), (Rules{"mo-blue", "mo-red"}));
        EXPECT_EQ(rules("forward", "net:red")[1],
                  "iifname \"mo-red\" oifname @bridges oifname != \"mo-red\" drop");
        EXPECT_EQ(rules("forward", "net:blue")[1],
                  "iifname \"mo-blue\" oifname @bridges oifname != \"mo-blue\" drop");
        auto set = run({kNft, "list", "set", "inet", "mobileops", "bridges"});
        EXPECT_NE(set.out.find("\"mo-red\" comment \"mobileops:net:red\""), std::string::npos)
            << set.out;
    });
}

TEST(Nft, SetPortsAddsDnatForTcpAndUdpAndReplaces) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24", "fd00:91:1::/64"}));
        nft.setPorts("c0ffee", "mo-red",
                     {{"", 8080, "10.91.1.2", 80, "tcp"},
                      {"127.0.0.1", 5353, "10.91.1.2", 53, "udp"},
                      {"", 8443, "fd00:91:1::2", 443, "tcp"}});
        Rules dnat{"meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.91.1.2:80",
                   "ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.91.1.2:53",
                   "meta nfproto ipv6 fib daddr type local tcp dport 8443 dnat ip6 to "
                   "[fd00:91:1::2]:443"};
        EXPECT_EQ(rules("prerouting", "ctr:c0ffee"), dnat);
        EXPECT_EQ(rules("output", "ctr:c0ffee"), dnat);
        EXPECT_EQ(rules("postrouting", "ctr:c0ffee"),
                  (Rules{"iifname \"mo-red\" oifname \"mo-red\" ip daddr 10.91.1.2 tcp dport 80 "
                         "ct status dnat masquerade",
                         "iifname \"mo-red\" oifname \"mo-red\" ip daddr 10.91.1.2 udp dport 53 "
                         "ct status dnat masquerade",
                         "iifname \"mo-red\" oifname \"mo-red\" ip6 daddr fd00:91:1::2 tcp dport "
                         "443 ct status dnat masquerade"}));

        nft.setPorts("c0ffee", "mo-red", {{"0.0.0.0", 9090, "10.91.1.2", 90, "udp"}});
        EXPECT_EQ(rules("prerouting", "ctr:c0ffee"),
                  Rules{"meta nfproto ipv4 fib daddr type local udp dport 9090 dnat ip to "
                        "10.91.1.2:90"});
        EXPECT_EQ(countRules(nft.table(), "ctr:c0ffee"), 3u);

        nft.setPorts("c0ffee", "mo-red", {});
        EXPECT_EQ(countRules(nft.table(), "ctr:c0ffee"), 0u);
        EXPECT_EQ(countRules(nft.table(), "net:red"), 5u);
    });
}

TEST(Nft, SetPortsWithNoPortsMakesNoTable) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setPorts("c0ffee", "mo-red", {});
        nft.removeOwner("net:nothing");
        EXPECT_EQ(nft.table(), nlohmann::json::object());
        EXPECT_TRUE(nft.owners().empty());
    });
}

TEST(Nft, RemoveOwnerRemovesOnlyThatOwner) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
        nft.setNetwork(network("blue", "mo-blue", {"10.91.2.0/24"}, true));
        nft.setPorts("c1", "mo-red", {{"", 8080, "10.91.1.2", 80, "tcp"}});
        nft.setPorts("c2", "mo-blue", {{"", 8081, "10.91.2.2", 80, "tcp"}});
        EXPECT_EQ(nft.owners(), (Rules{"ctr:c1", "ctr:c2", "net:blue", "net:red"}));

        auto before = nft.table();
        nft.removeOwner("net:red");
        auto t = nft.table();
        EXPECT_EQ(countRules(t, "net:red"), 0u);
        EXPECT_EQ(bridges(t), Rules{"mo-blue"});
        for (auto owner : {"net:blue", "ctr:c1", "ctr:c2", "base"})
            EXPECT_EQ(countRules(t, owner), countRules(before, owner)) << owner;
        EXPECT_EQ(nft.owners(), (Rules{"ctr:c1", "ctr:c2", "net:blue"}));

        nft.removeOwner("ctr:c1");
        nft.removeOwner("ctr:c1"); // none left: fine
        EXPECT_EQ(nft.owners(), (Rules{"ctr:c2", "net:blue"}));
        EXPECT_EQ(rules("prerouting", "ctr:c2").size(), 1u);
    });
}

TEST(Nft, RemoveTableRemovesEverythingAndAbsentIsFine) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.removeTable();
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
        nft.removeTable();
        EXPECT_EQ(nft.table(), nlohmann::json::object());
        EXPECT_NE(run({kNft, "list", "table", "inet", "mobileops"}).status, 0);
        EXPECT_TRUE(nft.owners().empty());
    });
}

TEST(Nft, BadInputIsRejectedBeforeNftWithTheValueNamed) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Nft nft;
        nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
        auto before = nft.table();
        auto expectInvalid = [&](const std::function<void()> &fn, const std::string &message) {
            try {
                fn();
                ADD_FAILURE() << "no error, expected: " << message;
            } catch (const Error &e) {
                EXPECT_EQ(e.code(), MO_E_INVALID) << e.what();
                EXPECT_EQ(std::string(e.what()), message);
            }
        };
        expectInvalid([&] { nft.setNetwork(network("red", "mo-\"x", {"10.91.1.0/24"})); },
                      "invalid bridge name `mo-\"x`: expected 1 to 15 letters, digits, `_`, "
                      "`.`, `-`");
        expectInvalid([&] { nft.setNetwork(network("red", "mo-0123456789abc", {})); },
                      "invalid bridge name `mo-0123456789abc`: expected 1 to 15 letters, "
                      "digits, `_`, `.`, `-`");
        expectInvalid([&] { nft.setNetwork(network("re\"d", "mo-red", {})); },
                      "invalid network name `re\"d`: expected 1 to 128 letters, digits, `_`, "
                      "`.`, `-`, starting with a letter or digit");
        std::string longName(115, 'n');
        expectInvalid([&] { nft.setNetwork(network(longName, "mo-red", {})); },
                      "invalid network name `" + longName +
                          "`: at most 114 bytes (it tags nftables rules)");
        expectInvalid([&] { nft.setPorts("c\"1", "mo-red", {}); },
                      "invalid container id `c\"1`: expected 1 to 114 letters, digits, `_`, "
                      "`.`, `-`");
        expectInvalid(
            [&] {
                nft.setPorts("c1", "mo-red", {{"", 80, "10.91.1.2", 80, "sctp"}});
            },
            "invalid protocol `sctp` in port mapping `80:80/sctp`: expected tcp or "
            "udp");
        expectInvalid(
            [&] {
                nft.setPorts("c1", "mo-red", {{"", 0, "10.91.1.2", 80, "tcp"}});
            },
            "invalid host port `0` in port mapping `0:80/tcp`: expected 1 to 65535");
        expectInvalid(
            [&] {
                nft.setPorts("c1", "mo-red", {{"", 80, "10.91.1.2\"", 80, "tcp"}});
            },
            "invalid container address `10.91.1.2\"`: expected an IPv4 or IPv6 address");
        expectInvalid(
            [&] {
                nft.setPorts("c1", "mo-red", {{"::1", 80, "10.91.1.2", 80, "tcp"}});
            },
            "invalid port mapping `[::1]:80:80/tcp`: host address `::1` and "
            "container address `10.91.1.2` are not of the same family");
        // A bad mapping after good ones: nothing of the call is applied.
        expectInvalid(
            [&] {
                nft.setPorts("c1", "mo-red",
                             {{"", 80, "10.91.1.2", 80, "tcp"}, {"", 81, "10.91.1.2", 0, "tcp"}});
            },
            "invalid container port `0` in port mapping `81:0/tcp`: expected 1 to 65535");
        EXPECT_EQ(nft.table(), before);
    });
}

TEST(Nft, AFailedScriptChangesNothing) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        // A regular chain `forward` (made by hand) in our table: nft refuses to make it a
        // base chain, after the table and other chains in the script, and none may stay.
        auto made = run({kNft, "add table inet mobileops; add chain inet mobileops forward"});
        ASSERT_EQ(made.status, 0) << made.err;
        Nft nft;
        auto before = nft.table();
        try {
            nft.setNetwork(network("red", "mo-red", {"10.91.1.0/24"}));
            ADD_FAILURE() << "no error";
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), MO_E_INTERNAL);
            EXPECT_EQ(std::string(e.what()),
                      "set the nftables rules of network `red`: nft `add chain inet mobileops "
                      "forward { type filter hook forward priority filter; policy accept; }`: "
                      "could not process rule: Operation not supported");
        }
        EXPECT_EQ(nft.table(), before);
        EXPECT_EQ(chains(nft.table()), Rules{"forward  "});
    });
}

namespace {

// A second network namespace beside the test's, standing in for a container: the test
// thread steps into it (setns) to make sockets there, and back.
class Peer {
public:
    Peer() {
        _home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (_home < 0 || ::unshare(CLONE_NEWNET) != 0)
            throw std::runtime_error("peer netns: " + std::string(strerror(errno)));
        _peer = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (::setns(_home, CLONE_NEWNET) != 0 || _peer < 0)
            throw std::runtime_error("back from the peer netns: " + std::string(strerror(errno)));
    }
    ~Peer() {
        ::close(_peer);
        ::close(_home);
    }
    // For `ip link ... netns PATH`: our descriptor, seen from another process.
    std::string path() const {
        return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(_peer);
    }
    template <class F> auto inside(F fn) {
        if (::setns(_peer, CLONE_NEWNET) != 0) throw std::runtime_error("setns into peer");
        struct Back {
            int fd;
            ~Back() { ::setns(fd, CLONE_NEWNET); }
        } back{_home};
        return fn();
    }

private:
    int _home = -1, _peer = -1;
};

int bound(int type, uint16_t port) {
    int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        (type == SOCK_STREAM && ::listen(fd, 8) != 0))
        throw std::runtime_error("bind port " + std::to_string(port) + ": " + strerror(errno));
    return fd;
}

std::string addressOf(const sockaddr_in &a) {
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
    return buf;
}

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 5000) == 1;
}

// Answers every TCP connection and UDP datagram with "from <the client's address>".
class EchoServer {
public:
    EchoServer(int tcp, int udp) : _tcp(tcp), _udp(udp), _thread([this] { serve(); }) {}
    ~EchoServer() {
        _stop = true;
        _thread.join();
        ::close(_tcp);
        ::close(_udp);
    }

private:
    void serve() {
        while (!_stop) {
            pollfd p[2] = {{_tcp, POLLIN, 0}, {_udp, POLLIN, 0}};
            if (::poll(p, 2, 50) <= 0) continue;
            sockaddr_in from{};
            socklen_t len = sizeof from;
            if (p[0].revents & POLLIN) {
                int c = ::accept4(_tcp, reinterpret_cast<sockaddr *>(&from), &len, SOCK_CLOEXEC);
                if (c < 0) continue;
                std::string reply = "from " + addressOf(from);
                (void)!::write(c, reply.data(), reply.size());
                ::close(c);
            }
            if (p[1].revents & POLLIN) {
                char buf[64];
                if (::recvfrom(_udp, buf, sizeof buf, 0, reinterpret_cast<sockaddr *>(&from),
                               &len) < 0)
                    continue;
                std::string reply = "from " + addressOf(from);
                ::sendto(_udp, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr *>(&from),
                         len);
            }
        }
    }
    int _tcp, _udp;
    std::atomic<bool> _stop{false};
    std::thread _thread;
};

// What the server answers to a client socket `fd` (already made in the right namespace)
// talking to ip:port; "" when nothing answers.
std::string ask(int fd, const std::string &ip, uint16_t port) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, ip.c_str(), &to.sin_addr);
    std::string reply;
    int type = 0;
    socklen_t len = sizeof type;
    ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
    bool sent = type == SOCK_STREAM
                    ? ::connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof to) == 0
                    : ::sendto(fd, "hi", 2, 0, reinterpret_cast<sockaddr *>(&to), sizeof to) == 2;
    char buf[64];
    ssize_t n = 0;
    if (sent && readable(fd) && (n = ::read(fd, buf, sizeof buf)) > 0) reply.assign(buf, n);
    ::close(fd);
    return reply;
}

int client(int type) {
    int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error("socket: " + std::string(strerror(errno)));
    return fd;
}

void sh(const std::vector<std::string> &argv) {
    auto r = run(argv);
    if (r.status != 0) {
        std::string cmd;
        for (auto &a : argv) cmd += a + " ";
        throw std::runtime_error(cmd + ": " + r.err);
    }
}

void sysctl(const std::string &key, const std::string &value) {
    std::ofstream("/proc/sys/net/" + key) << value;
}

} // namespace

// The test's namespace plays the host, a peer namespace behind a veth the container.
TEST(Nft, PublishedPortsCarryTcpAndUdpTraffic) {
    REQUIRE_ROOT_FOR_NETNS();
    inFreshNetns([] {
        Peer peer;
        sh({kIp, "link", "set", "lo", "up"});
        sh({kIp, "link", "add", "mo-t0", "type", "veth", "peer", "name", "ctr0", "netns",
            peer.path()});
        sh({kIp, "addr", "add", "10.99.0.1/24", "dev", "mo-t0"});
        sh({kIp, "link", "set", "mo-t0", "up"});
        peer.inside([] {
            sh({kIp, "link", "set", "lo", "up"});
            sh({kIp, "addr", "add", "10.99.0.2/24", "dev", "ctr0"});
            sh({kIp, "link", "set", "ctr0", "up"});
            sh({kIp, "route", "add", "default", "via", "10.99.0.1"});
        });
        sysctl("ipv4/ip_forward", "1");
        sysctl("ipv4/conf/mo-t0/route_localnet", "1");

        Nft nft;
        nft.setNetwork(network("t", "mo-t0", {"10.99.0.0/24"}));
        nft.setPorts("c1", "mo-t0",
                     {{"", 8080, "10.99.0.2", 7, "tcp"}, {"", 5353, "10.99.0.2", 7, "udp"}});
        EchoServer server(peer.inside([] { return bound(SOCK_STREAM, 7); }),
                          peer.inside([] { return bound(SOCK_DGRAM, 7); }));

        // From the host on 127.0.0.1: masqueraded to the bridge side's address, since the
        // container could not answer 127.0.0.1.
        EXPECT_EQ(ask(client(SOCK_STREAM), "127.0.0.1", 8080), "from 10.99.0.1");
        EXPECT_EQ(ask(client(SOCK_DGRAM), "127.0.0.1", 5353), "from 10.99.0.1");
        // From the host on one of its addresses: the source is kept.
        EXPECT_EQ(ask(client(SOCK_STREAM), "10.99.0.1", 8080), "from 10.99.0.1");
        // The container through the host's address to its own published port (prerouting,
        // then back over the same link): masqueraded, or the answer would bypass the host.
        EXPECT_EQ(ask(peer.inside([] { return client(SOCK_STREAM); }), "10.99.0.1", 8080),
                  "from 10.99.0.1");
        EXPECT_EQ(ask(peer.inside([] { return client(SOCK_DGRAM); }), "10.99.0.1", 5353),
                  "from 10.99.0.1");

        nft.removeOwner("ctr:c1");
        EXPECT_EQ(ask(client(SOCK_STREAM), "127.0.0.1", 8080), "");
    });
}
