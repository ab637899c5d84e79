// The network workflow and networked containers end to end, through the dispatcher. Every
// test runs mobileops inside a network namespace it creates (`ip netns add`) and deletes,
// so the machine's own interfaces, routes and firewall are never touched; traffic stays
// inside that namespace, the containers' and a client namespace the test makes.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

namespace mobileops::test {
namespace {

using nlohmann::json;

const char kNsenter[] = "/usr/bin/nsenter";
const char kIp[] = "/usr/sbin/ip";

class NetCli : public CliTest {
protected:
    void SetUp() override {
        CliTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        static std::atomic<int> counter{0};
        _ns = "mot" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
        ASSERT_EQ(run({kIp, "netns", "add", _ns}).status, 0);
        ASSERT_EQ(in({kIp, "link", "set", "lo", "up"}).status, 0);
    }

    void TearDown() override {
        if (!_ns.empty()) {
            Result r = mo({"container", "list", "--all", "--json"});
            if (r.status == 0)
                for (const auto &c : json::parse(r.out))
                    mo({"container", "delete", "--force", c["name"].get<std::string>()});
            run({kIp, "netns", "delete", _ns});
        }
        CliTest::TearDown();
    }

    // A command inside the test's network namespace.
    Result in(const std::vector<std::string> &args) {
        std::vector<std::string> argv{kNsenter, "--net=/run/netns/" + _ns};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, env());
    }
    Result mo(const std::vector<std::string> &args) {
        std::vector<std::string> argv{dispatcher()};
        argv.insert(argv.end(), args.begin(), args.end());
        return in(argv);
    }

    void boot(const std::string &name, const std::vector<std::string> &flags) {
        // busybox's ping needs a raw socket
        std::vector<std::string> args{"container", "boot", "--cap-add", "NET_RAW"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.insert(args.end(), {name, _rootfs, "/bin/sleep", "120"});
        Result r = mo(args);
        ASSERT_EQ(r.status, 0) << r.err;
    }

    Result exec(const std::string &name, const std::vector<std::string> &cmd) {
        std::vector<std::string> args{"container", "exec", name};
        args.insert(args.end(), cmd.begin(), cmd.end());
        return mo(args);
    }

    // The container's first IPv4 address on `network`.
    std::string addressOf(const std::string &network, const std::string &container) {
        json net = json::parse(mo({"network", "inspect", network}).out);
        for (const auto &c : net["containers"])
            if (c["name"] == container) {
                std::string a = c["addresses"][0];
                return a.substr(0, a.find('/'));
            }
        return "";
    }

    // Links of ours in the test namespace: host ends mo<hex>.
    std::vector<std::string> hostEnds() {
        Result r = in({kIp, "-j", "link", "show"});
        std::vector<std::string> out;
        for (const auto &l : json::parse(r.out)) {
            std::string name = l["ifname"];
            if (name.size() >= 11 && name.rfind("mo", 0) == 0 && name[2] != '-' &&
                name != "mobileops0")
                out.push_back(name);
        }
        return out;
    }

    std::string rules() { return in({"/usr/sbin/nft", "list", "table", "inet", "mobileops"}).out; }

    std::string _ns;
};

TEST_F(NetCli, ContainersOnOneNetworkReachEachOtherByName) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.1.0/24", "n1"}).status, 0);
    boot("a", {"--network", "n1"});
    boot("b", {"--network", "n1"});
    Result r = exec("a", {"/bin/ping", "-c", "1", "-W", "2", "b"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    r = exec("b", {"/bin/ping", "-c", "1", "-W", "2", "a"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    r = exec("a", {"/bin/cat", "/etc/hosts"});
    EXPECT_NE(r.out.find("\tb"), std::string::npos) << r.out;
    EXPECT_EQ(addressOf("n1", "a").rfind("10.77.1.", 0), 0u);
    // A third one later appears in the first ones' names.
    boot("c", {"--network", "n1"});
    r = exec("a", {"/bin/ping", "-c", "1", "-W", "2", "c"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST_F(NetCli, DifferentNetworksCannotReachEachOther) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.1.0/24", "n1"}).status, 0);
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.2.0/24", "n2"}).status, 0);
    boot("a", {"--network", "n1"});
    boot("c", {"--network", "n2"});
    std::string c = addressOf("n2", "c");
    ASSERT_FALSE(c.empty());
    Result r = exec("a", {"/bin/ping", "-c", "1", "-W", "1", c});
    EXPECT_NE(r.status, 0) << "n1 reached n2: " << r.out;
    r = exec("a", {"/bin/ping", "-c", "1", "-W", "1", "c"});
    EXPECT_NE(r.status, 0) << "a name of another network resolved: " << r.out;
}

TEST_F(NetCli, InternalNetworkHasNoWayOut) {
    // "Outside": an address of the test namespace not on any bridge.
    ASSERT_EQ(in({kIp, "link", "add", "out0", "type", "veth", "peer", "name", "out1"}).status, 0);
    ASSERT_EQ(in({kIp, "link", "set", "out1", "up"}).status, 0);
    ASSERT_EQ(in({kIp, "addr", "add", "192.0.2.1/24", "dev", "out0"}).status, 0);
    ASSERT_EQ(in({kIp, "link", "set", "out0", "up"}).status, 0);
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.3.0/24", "open"}).status, 0);
    ASSERT_EQ(mo({"network", "create", "--internal", "--subnet", "10.77.4.0/24", "closed"}).status,
              0);
    boot("o", {"--network", "open"});
    boot("i", {"--network", "closed"});
    Result r = exec("o", {"/bin/ping", "-c", "1", "-W", "2", "192.0.2.1"});
    EXPECT_EQ(r.status, 0) << "an open network reaches out: " << r.out << r.err;
    r = exec("i", {"/bin/ping", "-c", "1", "-W", "1", "192.0.2.1"});
    EXPECT_NE(r.status, 0) << r.out;
    r = exec("i", {"/bin/busybox", "ip", "route"});
    EXPECT_EQ(r.out.find("default"), std::string::npos) << r.out;
}

TEST_F(NetCli, PublishedPortsAnswerFromAnotherNamespaceAndLoopback) {
    // A client namespace wired to the test namespace, as another machine would be.
    std::string client = _ns + "c";
    ASSERT_EQ(run({kIp, "netns", "add", client}).status, 0);
    struct Drop {
        std::string ns;
        ~Drop() { run({kIp, "netns", "delete", ns}); }
    } drop{client};
    ASSERT_EQ(in({kIp, "link", "add", "toclient", "type", "veth", "peer", "name", "fromhost",
                  "netns", client})
                  .status,
              0);
    ASSERT_EQ(in({kIp, "addr", "add", "198.51.100.1/24", "dev", "toclient"}).status, 0);
    ASSERT_EQ(in({kIp, "link", "set", "toclient", "up"}).status, 0);
    auto inClient = [&](const std::vector<std::string> &args) {
        std::vector<std::string> argv{kNsenter, "--net=/run/netns/" + client};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv);
    };
    ASSERT_EQ(inClient({kIp, "addr", "add", "198.51.100.2/24", "dev", "fromhost"}).status, 0);
    ASSERT_EQ(inClient({kIp, "link", "set", "fromhost", "up"}).status, 0);
    ASSERT_EQ(inClient({kIp, "link", "set", "lo", "up"}).status, 0);

    ASSERT_EQ(run({"/bin/cp", BRIDGE_UDP_ECHO, _rootfs + "/bin/udp_echo"}).status, 0);
    Result r =
        mo({"container", "boot", "-p", "8080:80", "-p", "5353:53/udp", "web", _rootfs, "/bin/sh",
            "-c", "/bin/busybox nc -ll -p 80 -e /bin/echo tcp-hello & /bin/udp_echo 53 & wait"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    r = inClient({"/bin/busybox", "nc", "-w", "2", "198.51.100.1", "8080"});
    EXPECT_NE(r.out.find("tcp-hello"), std::string::npos) << r.out << r.err << rules();
    r = in({"/bin/busybox", "nc", "-w", "2", "127.0.0.1", "8080"});
    EXPECT_NE(r.out.find("tcp-hello"), std::string::npos) << r.out << r.err;
    // UDP, and the client's own address kept from another namespace (DNAT only).
    const char *udp = "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                      "s.settimeout(3); s.sendto(b'q', (sys.argv[1], 5353)); "
                      "print(s.recvfrom(200)[0].decode())";
    r = inClient({"/usr/bin/python3", "-c", udp, "198.51.100.1"});
    EXPECT_NE(r.out.find("udp-hello from 198.51.100.2"), std::string::npos) << r.out << r.err;
    r = in({"/usr/bin/python3", "-c", udp, "127.0.0.1"});
    EXPECT_NE(r.out.find("udp-hello"), std::string::npos) << r.out << r.err;
}

TEST_F(NetCli, ConnectAndDisconnectARunningContainer) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.1.0/24", "n1"}).status, 0);
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.2.0/24", "n2"}).status, 0);
    boot("a", {"--network", "n1"});
    boot("c", {"--network", "n2"});
    EXPECT_NE(exec("a", {"/bin/ping", "-c", "1", "-W", "1", "c"}).status, 0);
    Result r = mo({"network", "connect", "n2", "a"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = exec("a", {"/bin/ping", "-c", "1", "-W", "2", "c"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    r = exec("a", {"/bin/busybox", "ip", "addr"});
    EXPECT_NE(r.out.find("eth1"), std::string::npos) << r.out;
    r = mo({"network", "disconnect", "n2", "a"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = exec("a", {"/bin/busybox", "ip", "addr"});
    EXPECT_EQ(r.out.find("eth1"), std::string::npos) << r.out;
    EXPECT_NE(exec("a", {"/bin/ping", "-c", "1", "-W", "1", "c"}).status, 0);
}

TEST_F(NetCli, TwentyParallelStartsGetTwentyAddresses) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.5.0/24", "many"}).status, 0);
    std::vector<std::thread> threads;
    std::atomic<int> failed{0};
    for (int i = 0; i < 20; ++i)
        threads.emplace_back([&, i] {
            Result r = mo({"container", "boot", "--network", "many", "p" + std::to_string(i),
                           _rootfs, "/bin/sleep", "120"});
            if (r.status != 0) {
                ++failed;
                ADD_FAILURE() << r.err;
            }
        });
    for (auto &t : threads) t.join();
    EXPECT_EQ(failed, 0);
    json net = json::parse(mo({"network", "inspect", "many"}).out);
    std::set<std::string> addresses;
    for (const auto &c : net["containers"]) addresses.insert(c["addresses"][0]);
    EXPECT_EQ(addresses.size(), 20u) << net.dump(2);
    EXPECT_EQ(hostEnds().size(), 20u);
}

TEST_F(NetCli, DeleteAndGcLeaveNoVethRuleOrLease) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.6.0/24", "n1"}).status, 0);
    boot("a", {"--network", "n1", "-p", "9090:90"});
    EXPECT_EQ(hostEnds().size(), 1u);
    EXPECT_NE(rules().find("mobileops:ctr:"), std::string::npos) << rules();
    ASSERT_EQ(mo({"container", "delete", "--force", "a"}).status, 0);
    EXPECT_TRUE(hostEnds().empty());
    EXPECT_EQ(rules().find("mobileops:ctr:"), std::string::npos) << rules();
    EXPECT_TRUE(json::parse(mo({"network", "inspect", "n1"}).out)["containers"].empty());

    // A boot killed at some point of its work: gc repairs whatever it left.
    for (int delay : {30, 80, 150}) {
        pid_t pid = ::fork();
        if (pid == 0) {
            std::string ns = "--net=/run/netns/" + _ns, d = dispatcher();
            for (const auto &[k, v] : env()) ::setenv(k.c_str(), v.c_str(), 1);
            ::execl(kNsenter, kNsenter, ns.c_str(), d.c_str(), "container", "boot", "--network",
                    "n1", "-p", "9091:91", "k", _rootfs.c_str(), "/bin/sleep", "120", nullptr);
            ::_exit(127);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(delay));
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        mo({"container", "delete", "--force", "k"});
        Result r = mo({"system", "gc"});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_TRUE(hostEnds().empty()) << "after a boot killed at " << delay << " ms";
        EXPECT_EQ(rules().find("mobileops:ctr:"), std::string::npos) << rules();
        EXPECT_TRUE(json::parse(mo({"network", "inspect", "n1"}).out)["containers"].empty());
    }
}

TEST_F(NetCli, BadNetworksAreRefusedClearly) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.1.0/24", "n1"}).status, 0);
    Result r = mo({"network", "create", "--subnet", "10.77.0.0/16", "n2"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("overlaps network `n1`"), std::string::npos) << r.err;
    r = mo({"network", "create", "--subnet", "10.77.300.0/24", "n3"});
    EXPECT_NE(r.err.find("invalid --subnet `10.77.300.0/24`"), std::string::npos) << r.err;
    r = mo({"network", "create", "--subnet", "10.78.0.0/33", "n3"});
    EXPECT_NE(r.err.find("invalid --subnet"), std::string::npos) << r.err;
    r = mo({"network", "create", "--subnet", "10.78.0.0/24", "--gateway", "10.79.0.1", "n3"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("10.79.0.1"), std::string::npos) << r.err;
    r = mo({"container", "boot", "--network", "nosuch", "x", _rootfs, "/bin/sleep", "1"});
    EXPECT_NE(r.err.find("no such network `nosuch`"), std::string::npos) << r.err;
    boot("a", {"--network", "n1"});
    r = mo({"network", "rm", "n1"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("in use by `a`"), std::string::npos) << r.err;
    r = mo({"container", "create", "-p", "80", "y", _rootfs, "/bin/true"});
    EXPECT_NE(r.err.find("--publish"), std::string::npos) << r.err;
}

TEST_F(NetCli, Ipv6NetworkSetupAndCounters) {
    Result r = mo({"network", "setup-container", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["bridge"], "mobileops0");
    r = mo({"network", "create", "--ipv6", "--subnet", "10.77.7.0/24", "--subnet", "fd00:77:7::/64",
            "dual"});
    ASSERT_EQ(r.status, 0) << r.err;
    boot("a", {"--network", "dual"});
    boot("b", {"--network", "dual"});
    json net = json::parse(mo({"network", "inspect", "dual"}).out);
    std::string b6;
    for (const auto &c : net["containers"])
        if (c["name"] == "b")
            for (const auto &a : c["addresses"])
                if (a.get<std::string>().find(':') != std::string::npos)
                    b6 = a.get<std::string>().substr(0, a.get<std::string>().find('/'));
    ASSERT_EQ(b6.rfind("fd00:77:7::", 0), 0u) << net.dump(2);
    r = exec("a", {"/bin/ping", "-6", "-c", "1", "-W", "2", b6});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    // The counters of both attachments show the traffic.
    r = mo({"network", "monitor", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json counters = json::parse(r.out);
    ASSERT_EQ(counters.size(), 2u) << counters.dump(2);
    for (const auto &c : counters) EXPECT_GT(c["tx_packets"].get<int>(), 0) << c;
    // --network none and host get nothing from the service.
    boot("n", {"--network", "none"});
    r = exec("n", {"/bin/busybox", "ip", "addr"});
    EXPECT_EQ(r.out.find("eth0"), std::string::npos) << r.out;
    EXPECT_EQ(json::parse(mo({"network", "monitor", "--json"}).out).size(), 2u);
}

TEST_F(NetCli, IntegrityNetworkNamesWhatIsMissingAndExtra) {
    ASSERT_EQ(mo({"network", "create", "--subnet", "10.77.9.0/24", "n9"}).status, 0);
    boot("a", {"--network", "n9"});
    Result r = mo({"integrity", "network", "--json"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(json::parse(r.out)["ok"].get<bool>()) << r.out;

    // Behind mobileops's back: the container's veth goes, a stray one of our form appears.
    std::vector<std::string> ends = hostEnds();
    ASSERT_EQ(ends.size(), 1u);
    ASSERT_EQ(in({kIp, "link", "delete", ends[0]}).status, 0);
    ASSERT_EQ(
        in({kIp, "link", "add", "mo0badc0de1", "type", "veth", "peer", "name", "strayp"}).status,
        0);
    r = mo({"integrity", "network", "--json"});
    EXPECT_EQ(r.status, 1) << r.out;
    json report = json::parse(r.out);
    EXPECT_FALSE(report["ok"].get<bool>());
    std::string veths = report["veths"].dump();
    EXPECT_NE(veths.find(ends[0]), std::string::npos) << veths;
    EXPECT_NE(veths.find("mo0badc0de1"), std::string::npos) << veths;
    r = mo({"integrity", "network"});
    EXPECT_NE(r.out.find("missing  " + ends[0]), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("extra    mo0badc0de1"), std::string::npos) << r.out;
}

} // namespace
} // namespace mobileops::test
