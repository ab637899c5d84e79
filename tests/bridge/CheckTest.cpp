// The network check against a real namespace: a network with a container attached through
// the engine (records in a real store in a temporary root, links and rules in a network
// namespace of the test's own), then links, addresses and rules changed behind the
// engine's back with `ip` and `nft`, each change found and named.
#include "Check.h"
#include "Attach.h"
#include "Networks.h"

#include "BridgeTestSupport.h"
#include "NetnsFixture.h"
#include "TestUtil.h"

#include "mobileops/core/Config.h"
#include "mobileops/core/PluginManager.h"
#include "mobileops/core/Store.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <sstream>

using namespace mobileops::bridge;
using mobileops::test::CoreHost;
using mobileops::test::inFreshNetns;
using mobileops::test::NetnsChild;
using mobileops::test::run;
using nlohmann::json;

namespace {

namespace core = mobileops::core;
using mobileops::common::Host;

const std::string kIp = "/usr/sbin/ip";
const std::string kNft = "/usr/sbin/nft";
const std::string kId = "c0ffee0012345678c0ffee0012345678c0ffee0012345678c0ffee0012345678";
const std::string kVeth = "moc0ffee000"; // Attacher's host end of kId's first network

void sh(const std::vector<std::string> &argv) {
    auto r = run(argv);
    ASSERT_EQ(r.status, 0) << argv[0] << " " << argv[1] << ": " << r.err;
}

// The handle of the rule in `chain` whose text contains `needle`, from `nft -a list`.
std::string handleOf(const std::string &chain, const std::string &needle) {
    auto r = run({kNft, "-a", "list", "chain", "inet", "mobileops", chain});
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);)
        if (line.find(needle) != std::string::npos) {
            auto at = line.rfind("# handle ");
            if (at != std::string::npos) return line.substr(at + 9);
        }
    return "";
}

json rule(const std::string &chain, const std::string &owner, const std::string &text) {
    return {{"kind", "rule"}, {"chain", chain}, {"comment", "mobileops:" + owner}, {"rule", text}};
}

bool contains(const json &list, const json &item) {
    return std::find(list.begin(), list.end(), item) != list.end();
}

class NetworkCheck : public ::testing::Test {
protected:
    void SetUp() override { REQUIRE_ROOT_FOR_NETNS(); }

    const Host &host() { return _core.host(); }

    // Network `red` (10.77.1.0/24) and container kId on it with port 8080 published, as
    // a container start makes them.
    void attachRed(const NetnsChild &child) {
        NetworkRequest r;
        r.name = "red";
        r.subnets = {"10.77.1.0/24"};
        Networks(host()).create(r, {});
        Attacher(host()).attach(
            kId, child.pid(),
            {{"name", "web"},
             {"networks", {{{"name", "red"}}}},
             {"ports", {{{"hostPort", 8080}, {"containerPort", 80}, {"protocol", "tcp"}}}}});
    }

    mobileops::test::TempDir _dir;
    CoreHost _core{_dir.path()};
};

} // namespace

TEST_F(NetworkCheck, CleanEmptyStateIsOk) {
    inFreshNetns([&] {
        // A bridge and a veth of the host's own are none of ours.
        sh({kIp, "link", "add", "br0", "type", "bridge"});
        sh({kIp, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"});
        json r = checkNetworks(host());
        EXPECT_EQ(r, (json{{"ok", true},
                           {"bridges",
                            {{"expected", json::array()},
                             {"missing", json::array()},
                             {"extra", json::array()}}},
                           {"veths",
                            {{"expected", json::array()},
                             {"missing", json::array()},
                             {"extra", json::array()},
                             {"detached", json::array()}}},
                           {"nft",
                            {{"table", "inet mobileops"},
                             {"present", false},
                             {"missing", json::array()},
                             {"extra", json::array()}}},
                           {"addresses", {{"missing", json::array()}}}}))
            << r.dump(2);
    });
}

TEST_F(NetworkCheck, AttachedContainerIsOk) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        json r = checkNetworks(host());
        EXPECT_TRUE(r["ok"]) << r.dump(2);
        EXPECT_EQ(r["bridges"]["expected"], json{"mo-red"});
        EXPECT_EQ(r["veths"]["expected"], json{kVeth});
        EXPECT_TRUE(r["nft"]["present"]);
        EXPECT_EQ(r["nft"]["missing"], json::array());
        EXPECT_EQ(r["nft"]["extra"], json::array());
    });
}

TEST_F(NetworkCheck, DeletedBridgeIsMissingAndItsVethDetached) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        sh({kIp, "link", "del", "mo-red"});
        json r = checkNetworks(host());
        EXPECT_FALSE(r["ok"]);
        EXPECT_EQ(r["bridges"]["missing"], json{"mo-red"}) << r.dump(2);
        // Its ports were released with it: the veth is on no bridge.
        EXPECT_EQ(r["veths"]["detached"],
                  (json{{{"veth", kVeth}, {"bridge", "mo-red"}, {"master", ""}}}));
        // A bridge that is gone has no addresses to miss.
        EXPECT_EQ(r["addresses"]["missing"], json::array());

        sh({kIp, "link", "del", kVeth});
        r = checkNetworks(host());
        EXPECT_EQ(r["veths"]["missing"], json{kVeth}) << r.dump(2);
        EXPECT_EQ(r["veths"]["detached"], json::array());
    });
}

TEST_F(NetworkCheck, StrayLinksThatLookOursAreExtra) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        sh({kIp, "link", "add", "mo0badf00d1", "type", "veth", "peer", "name", "mp0badf00d1"});
        sh({kIp, "link", "add", "mo-ghost", "type", "bridge"});
        sh({kIp, "link", "add", "mobileops0", "type", "bridge"});
        // Not ours by name: another program's veth and bridge.
        sh({kIp, "link", "add", "monitor0", "type", "veth", "peer", "name", "monitor1"});
        sh({kIp, "link", "add", "docker0", "type", "bridge"});
        json r = checkNetworks(host());
        EXPECT_FALSE(r["ok"]);
        EXPECT_EQ(r["veths"]["extra"], json{"mo0badf00d1"}) << r.dump(2);
        EXPECT_EQ(r["veths"]["missing"], json::array());
        EXPECT_EQ(r["bridges"]["extra"], (json{"mo-ghost", "mobileops0"}));
        EXPECT_EQ(r["bridges"]["missing"], json::array());
    });
}

TEST_F(NetworkCheck, FlushedChainAndDeletedRuleAreMissing) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        sh({kNft, "flush", "chain", "inet", "mobileops", "postrouting"});
        std::string handle = handleOf("forward", "oifname @bridges");
        ASSERT_FALSE(handle.empty());
        sh({kNft, "delete", "rule", "inet", "mobileops", "forward", "handle", handle});

        json r = checkNetworks(host());
        EXPECT_FALSE(r["ok"]);
        json missing = r["nft"]["missing"];
        EXPECT_EQ(missing.size(), 4u) << missing.dump(2);
        EXPECT_TRUE(contains(missing, rule("postrouting", "net:red",
                                           "ip saddr 10.77.1.0/24 ip daddr != 10.77.1.0/24 "
                                           "masquerade")))
            << missing.dump(2);
        EXPECT_TRUE(contains(missing, rule("postrouting", "net:red",
                                           "oifname \"mo-red\" ip saddr 127.0.0.0/8 masquerade")));
        EXPECT_TRUE(contains(missing, rule("postrouting", "ctr:" + kId,
                                           "iifname \"mo-red\" oifname \"mo-red\" ip daddr "
                                           "10.77.1.2 tcp dport 80 ct status dnat masquerade")));
        EXPECT_TRUE(contains(missing, rule("forward", "net:red",
                                           "iifname \"mo-red\" oifname @bridges oifname != "
                                           "\"mo-red\" drop")));
        EXPECT_EQ(r["nft"]["extra"], json::array());
        // Links are untouched.
        EXPECT_EQ(r["bridges"]["missing"], json::array());
        EXPECT_EQ(r["veths"]["missing"], json::array());
    });
}

TEST_F(NetworkCheck, SetElementAndTableMissingStrayRuleExtra) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        sh({kNft, "delete", "element", "inet", "mobileops", "bridges", "{ \"mo-red\" }"});
        sh({kNft, "add", "rule", "inet", "mobileops", "forward", "tcp", "dport", "9999", "drop"});
        json r = checkNetworks(host());
        EXPECT_EQ(r["nft"]["missing"], (json{{{"kind", "element"},
                                              {"set", "bridges"},
                                              {"element", "mo-red"},
                                              {"comment", "mobileops:net:red"}}}))
            << r.dump(2);
        EXPECT_EQ(r["nft"]["extra"], (json{{{"kind", "rule"},
                                            {"chain", "forward"},
                                            {"comment", ""},
                                            {"rule", "tcp dport 9999 drop"}}}));

        sh({kNft, "delete", "table", "inet", "mobileops"});
        r = checkNetworks(host());
        EXPECT_FALSE(r["nft"]["present"]);
        ASSERT_FALSE(r["nft"]["missing"].empty());
        EXPECT_EQ(r["nft"]["missing"][0], (json{{"kind", "table"}, {"table", "inet mobileops"}}));
        // Four chains, the set, its element, two base rules, four rules of the network
        // and three of the published port.
        EXPECT_EQ(r["nft"]["missing"].size(), 16u) << r["nft"]["missing"].dump(2);
    });
}

TEST_F(NetworkCheck, BridgeWithoutItsGatewayAddress) {
    inFreshNetns([&] {
        NetnsChild child;
        ASSERT_TRUE(child.ok());
        attachRed(child);
        sh({kIp, "addr", "del", "10.77.1.1/24", "dev", "mo-red"});
        json r = checkNetworks(host());
        EXPECT_FALSE(r["ok"]);
        EXPECT_EQ(r["addresses"]["missing"],
                  (json{{{"bridge", "mo-red"}, {"network", "red"}, {"address", "10.77.1.1/24"}}}))
            << r.dump(2);
    });
}

TEST_F(NetworkCheck, IdleNetworkExpectsWhatIsLeftOrNothing) {
    inFreshNetns([&] {
        {
            NetnsChild child;
            ASSERT_TRUE(child.ok());
            attachRed(child);
        }
        // The container exits: its veth, port rules and lease go; the network's bridge
        // and rules stay, and are still checked.
        Attacher(host()).detach(kId);
        json r = checkNetworks(host());
        EXPECT_TRUE(r["ok"]) << r.dump(2);
        EXPECT_EQ(r["bridges"]["expected"], json{"mo-red"});
        EXPECT_EQ(r["veths"]["expected"], json::array());

        sh({kIp, "addr", "del", "10.77.1.1/24", "dev", "mo-red"});
        EXPECT_EQ(checkNetworks(host())["addresses"]["missing"].size(), 1u);

        // After a reboot an idle network has no bridge: nothing is expected of it, and
        // the rules a reboot would have taken are not extra either.
        sh({kIp, "link", "del", "mo-red"});
        r = checkNetworks(host());
        EXPECT_TRUE(r["ok"]) << r.dump(2);
        EXPECT_EQ(r["bridges"]["expected"], json::array());

        // Removed: the bridge and rules go, the table's chains and base rules stay.
        Attacher(host()).removeNetwork("red", false);
        r = checkNetworks(host());
        EXPECT_TRUE(r["ok"]) << r.dump(2);
        EXPECT_TRUE(r["nft"]["present"]);
    });
}

TEST_F(NetworkCheck, LeftoversOfALostNetworkRecordAreExtra) {
    inFreshNetns([&] {
        {
            NetnsChild child;
            ASSERT_TRUE(child.ok());
            attachRed(child);
        }
        Attacher(host()).detach(kId);
        // The record alone goes (a store restored from a backup, another root's network).
        Networks(host()).remove("red", true);
        json r = checkNetworks(host());
        EXPECT_FALSE(r["ok"]);
        EXPECT_EQ(r["bridges"]["extra"], json{"mo-red"}) << r.dump(2);
        json extra = r["nft"]["extra"];
        EXPECT_EQ(extra.size(), 5u) << extra.dump(2); // the set element and four rules
        EXPECT_TRUE(contains(
            extra, rule("forward", "net:red", "iifname \"mo-red\" oifname \"mo-red\" accept")));
        EXPECT_EQ(r["nft"]["missing"], json::array());
    });
}
