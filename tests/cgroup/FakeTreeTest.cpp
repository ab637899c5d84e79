// The manager and both backends on fake cgroupfs trees: what is made, written and removed
// on v1, v2 and hybrid layouts, without root.
#include "Cgroups.h"
#include "ErrorCode.h"
#include "FakeCgroupFs.h"

#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include <unistd.h>

namespace mobileops::cgroup {
namespace {

using nlohmann::json;
using testing::FakeCgroupFs;

Settings full() {
    return parseResources(json::parse(R"({
        "requests": {"cpu": 500, "memory": 33554432},
        "limits": {"cpu": 1500, "memory": 67108864, "pids": 20},
        "cpuset": "1"})"));
}

bool wrote(const FakeCgroupFs &fake, const std::string &suffix, const std::string &value) {
    return std::any_of(fake.writes.begin(), fake.writes.end(), [&](const auto &w) {
        return w.second == value && w.first.size() >= suffix.size() &&
               w.first.compare(w.first.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
}

using testing::codeOf;

TEST(FakeTree, V1CpusetFillsAParentAnotherCommandMadeButDidNotFillYet) {
    // Shared parents come and go with their last container: a parent made a moment ago by
    // a concurrent create may still have empty cpus/mems, and a child copying them would
    // refuse every task (ENOSPC on cgroup.procs).
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    std::string r = fake.root() + "/sys/fs/cgroup/cpuset";
    ASSERT_EQ(fake.mkdir(r + "/mobileops"), 0);
    fake.put(r + "/mobileops/cpuset.cpus", "");
    fake.put(r + "/mobileops/cpuset.mems", "");
    cg.create("ct1", parseResources(json::object()));
    EXPECT_EQ(fake.get(r + "/mobileops/cpuset.cpus"), "0-3");
    EXPECT_EQ(fake.get(r + "/mobileops/cpuset.mems"), "0");
    EXPECT_EQ(fake.get(r + "/mobileops/ct1/cpuset.cpus"), "0-3");
    EXPECT_EQ(fake.get(r + "/mobileops/ct1/cpuset.mems"), "0");
}

TEST(FakeTree, HybridCreateAppliesOnOwnersAndTracksOnUnified) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct1", full());
    std::string r = fake.root() + "/sys/fs/cgroup";
    for (const char *h :
         {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "unified"})
        EXPECT_TRUE(std::filesystem::is_directory(r + "/" + h + "/mobileops/ct1")) << h;
    EXPECT_FALSE(std::filesystem::exists(r + "/systemd/mobileops"));
    EXPECT_EQ(fake.get(r + "/cpu/mobileops/ct1/cpu.cfs_quota_us"), "150000");
    EXPECT_EQ(fake.get(r + "/cpu/mobileops/ct1/cpu.cfs_period_us"), "100000");
    EXPECT_EQ(fake.get(r + "/cpu/mobileops/ct1/cpu.shares"), "512");
    EXPECT_EQ(fake.get(r + "/memory/mobileops/ct1/memory.limit_in_bytes"), "67108864");
    EXPECT_EQ(fake.get(r + "/memory/mobileops/ct1/memory.soft_limit_in_bytes"), "33554432");
    EXPECT_EQ(fake.get(r + "/pids/mobileops/ct1/pids.max"), "20");
    EXPECT_EQ(fake.get(r + "/cpuset/mobileops/ct1/cpuset.cpus"), "1");
    // New v1 cpusets inherit memory nodes (and CPUs) from their parent.
    EXPECT_EQ(fake.get(r + "/cpuset/mobileops/cpuset.cpus"), "0-3");
    EXPECT_EQ(fake.get(r + "/cpuset/mobileops/ct1/cpuset.mems"), "0");
    // Nothing enabled on a cgroup2 mount that offers none of our controllers.
    EXPECT_EQ(fake.get(r + "/unified/cgroup.subtree_control"), "");

    EXPECT_EQ(cg.dirs("ct1").size(), 9u);
    cg.create("ct1", {}); // idempotent
    cg.destroy("ct1");
    for (const std::string &d : cg.dirs("ct1")) EXPECT_FALSE(std::filesystem::exists(d)) << d;
    EXPECT_TRUE(std::filesystem::is_directory(r + "/memory/mobileops")); // the shared parent stays
    cg.destroy("ct1");                                                   // idempotent
}

TEST(FakeTree, UnifiedEnablesControllersDownThePath) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("a/ct", full());
    std::string r = fake.root() + "/sys/fs/cgroup";
    EXPECT_EQ(fake.get(r + "/cgroup.subtree_control"), "cpu cpuset io memory pids");
    EXPECT_EQ(fake.get(r + "/mobileops/cgroup.subtree_control"), "cpu cpuset io memory pids");
    EXPECT_EQ(fake.get(r + "/mobileops/a/cgroup.subtree_control"), "cpu cpuset io memory pids");
    std::string d = r + "/mobileops/a/ct";
    EXPECT_EQ(fake.get(d + "/cpu.max"), "150000 100000");
    EXPECT_EQ(fake.get(d + "/cpu.weight"), std::to_string(weightFromShares(512)));
    EXPECT_EQ(fake.get(d + "/memory.max"), "67108864");
    EXPECT_EQ(fake.get(d + "/memory.low"), "33554432");
    EXPECT_EQ(fake.get(d + "/pids.max"), "20");
    EXPECT_EQ(fake.get(d + "/cpuset.cpus"), "1");
    EXPECT_FALSE(wrote(fake, "/hugetlb", "")); // never enabled: not ours

    cg.update("a/ct", parseResources(json::parse(
                          R"({"limits": {"cpu": null, "memory": null, "pids": null}})")));
    EXPECT_EQ(fake.get(d + "/cpu.max"), "max 100000");
    EXPECT_EQ(fake.get(d + "/memory.max"), "max");
    EXPECT_EQ(fake.get(d + "/pids.max"), "max");
    cg.destroy("a/ct");
    EXPECT_FALSE(std::filesystem::exists(d));
}

Settings swapAndIo(const char *extra = "") {
    return parseResources(json::parse(std::string(R"({
        "limits": {"memory": 67108864}, "memorySwap": 134217728, "blkioWeight": 300,
        "deviceThrottle": [{"device": "/dev/vda", "major": 254, "minor": 0, "readBps": 1048576,
                            "writeBps": 2097152, "readIops": 100, "writeIops": 0}])") +
                                      extra + "}"));
}

TEST(FakeTree, HybridSwapSwappinessAndBlkio) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", swapAndIo(R"(, "memorySwappiness": 10)"));
    std::string r = fake.root() + "/sys/fs/cgroup";
    std::string m = r + "/memory/mobileops/ct", b = r + "/blkio/mobileops/ct";
    EXPECT_EQ(fake.get(m + "/memory.limit_in_bytes"), "67108864");
    EXPECT_EQ(fake.get(m + "/memory.memsw.limit_in_bytes"), "134217728");
    EXPECT_EQ(fake.get(m + "/memory.swappiness"), "10");
    EXPECT_EQ(fake.get(b + "/blkio.bfq.weight"), "300");
    EXPECT_EQ(fake.get(b + "/blkio.throttle.read_bps_device"), "254:0 1048576");
    EXPECT_EQ(fake.get(b + "/blkio.throttle.write_bps_device"), "254:0 2097152");
    EXPECT_EQ(fake.get(b + "/blkio.throttle.read_iops_device"), "254:0 100");
    EXPECT_EQ(fake.get(b + "/blkio.throttle.write_iops_device"), "254:0 0"); // 0: no limit

    // memory+swap grows first, shrinks last: memory <= memory+swap at every step
    fake.writes.clear();
    cg.update("ct", parseResources(json::parse(
                        R"({"limits": {"memory": 268435456}, "memorySwap": 536870912})")));
    ASSERT_EQ(fake.writes.size(), 2u);
    EXPECT_EQ(fake.writes[0].second, "536870912");
    EXPECT_EQ(fake.writes[1].second, "268435456");
    fake.writes.clear();
    cg.update("ct", parseResources(json::parse(
                        R"({"limits": {"memory": 33554432}, "memorySwap": 67108864})")));
    ASSERT_EQ(fake.writes.size(), 2u);
    EXPECT_EQ(fake.writes[0].second, "33554432");
    EXPECT_EQ(fake.writes[1].second, "67108864");
    cg.update("ct", parseResources(json::parse(R"({"memorySwap": -1})")));
    EXPECT_EQ(fake.get(m + "/memory.memsw.limit_in_bytes"), "-1");

    // a host whose I/O scheduler has no weight (mq-deadline, kyber, none)
    std::filesystem::remove(b + "/blkio.bfq.weight");
    std::string msg;
    EXPECT_EQ(
        codeOf([&] { cg.update("ct", parseResources(json::parse(R"({"blkioWeight": 50})"))); },
               &msg),
        MO_E_UNSUPPORTED);
    EXPECT_EQ(msg, "update cgroup `ct`: blkio weight: neither `blkio.weight` nor "
                   "`blkio.bfq.weight` exists (they need the bfq or cfq I/O scheduler)");
    cg.destroy("ct");
}

TEST(FakeTree, MemoryLimitAloneAllowsAsMuchSwapAgain) {
    for (bool unified : {false, true}) {
        FakeCgroupFs fake(unified ? testing::unifiedMounts() : testing::hybridMounts());
        Cgroups cg(fake.layout(), fake, {"/mobileops"});
        std::string d = fake.root() + (unified ? "/sys/fs/cgroup/mobileops/ct"
                                               : "/sys/fs/cgroup/memory/mobileops/ct");
        const char *swapFile = unified ? "/memory.swap.max" : "/memory.memsw.limit_in_bytes";
        auto swap = [&] { return fake.get(d + swapFile); };
        cg.create("ct", parseResources(json::parse(R"({"limits": {"memory": 67108864}})")));
        // docker's and podman's default: memory plus swap is twice the limit
        EXPECT_EQ(swap(), unified ? "67108864" : "134217728") << unified;
        // a new limit takes the default along
        cg.update("ct", parseResources(json::parse(R"({"limits": {"memory": 268435456}})")));
        EXPECT_EQ(swap(), unified ? "268435456" : "536870912") << unified;
        // a swap limit of the user's stays (v2 keeps the swap part alone: 32Mi)
        cg.update("ct", parseResources(json::parse(
                            R"({"limits": {"memory": 268435456}, "memorySwap": 301989888})")));
        cg.update("ct", parseResources(json::parse(R"({"limits": {"memory": 134217728}})")));
        EXPECT_EQ(swap(), unified ? "33554432" : "301989888") << unified;
        cg.destroy("ct");
    }
}

TEST(FakeTree, UnifiedSwapAndIoMax) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", swapAndIo());
    std::string d = fake.root() + "/sys/fs/cgroup/mobileops/ct";
    EXPECT_EQ(fake.get(d + "/memory.max"), "67108864");
    EXPECT_EQ(fake.get(d + "/memory.swap.max"), "67108864"); // 128Mi total minus 64Mi memory
    EXPECT_EQ(fake.get(d + "/io.bfq.weight"), "300");
    EXPECT_EQ(fake.get(d + "/io.max"), "254:0 rbps=1048576 wbps=2097152 riops=100 wiops=max");
    // swap alone: the memory part comes from memory.max
    cg.update("ct", parseResources(json::parse(R"({"memorySwap": 100663296})")));
    EXPECT_EQ(fake.get(d + "/memory.swap.max"), "33554432");
    cg.update("ct", parseResources(json::parse(R"({"memorySwap": -1})")));
    EXPECT_EQ(fake.get(d + "/memory.swap.max"), "max");

    std::string msg;
    EXPECT_EQ(
        codeOf([&] { cg.update("ct", parseResources(json::parse(R"({"memorySwappiness": 0})"))); },
               &msg),
        MO_E_UNSUPPORTED);
    EXPECT_EQ(msg, "update cgroup `ct`: --memory-swappiness: cgroup v2 has no swappiness (memory "
                   "is on the v2 hierarchy `" +
                       fake.root() + "/sys/fs/cgroup`)");
    cg.destroy("ct");

    // refused on create before anything is made
    EXPECT_EQ(codeOf([&] {
                  cg.create("ct2", parseResources(json::parse(R"({"memorySwappiness": 0})")));
              }),
              MO_E_UNSUPPORTED);
    EXPECT_FALSE(std::filesystem::exists(fake.root() + "/sys/fs/cgroup/mobileops/ct2"));
}

TEST(FakeTree, RelativeParentNestsBelowOwnCgroup) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"mobileops-test"});
    cg.create("ct", {});
    std::string r = fake.root() + "/sys/fs/cgroup";
    EXPECT_TRUE(std::filesystem::is_directory(r + "/memory/process_api/abc/mobileops-test/ct"));
    EXPECT_TRUE(std::filesystem::is_directory(r + "/pids/mobileops-test/ct"));
    EXPECT_EQ(cg.dirFor("ct", "memory"), r + "/memory/process_api/abc/mobileops-test/ct");
}

TEST(FakeTree, UnsupportedControllerRefusedBeforeAnythingIsMade) {
    auto mounts = testing::unifiedMounts();
    mounts[0].controllers = {"cpu", "pids"};
    FakeCgroupFs fake(mounts);
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.create("ct", full()); }, &msg), MO_E_UNSUPPORTED);
    EXPECT_NE(msg.find("memory limit: the `memory` controller is not available on this host"),
              std::string::npos)
        << msg;
    EXPECT_FALSE(std::filesystem::exists(fake.root() + "/sys/fs/cgroup/mobileops"));
}

TEST(FakeTree, IgnoreUnsupportedLeavesOutWhatTheHostCannotApply) {
    auto mounts = testing::unifiedMounts();
    mounts[0].controllers = {"cpu", "pids"};
    FakeCgroupFs fake(mounts);
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    Settings s = full();
    s.ignoreUnsupported = true;
    std::vector<Unsupported> skipped;
    cg.create("ct", s, &skipped);
    std::string d = fake.root() + "/sys/fs/cgroup/mobileops/ct";
    EXPECT_EQ(fake.get(d + "/cpu.max"), "150000 100000");
    EXPECT_EQ(fake.get(d + "/pids.max"), "20");
    std::vector<std::string> fields;
    for (const Unsupported &u : skipped) fields.push_back(u.field);
    EXPECT_EQ(fields, (std::vector<std::string>{"limits.memory", "requests.memory", "cpuset"}));
    EXPECT_NE(skipped[0].reason.find("the `memory` controller is not available"),
              std::string::npos);

    // requested against applied names what was left out and why
    json report = cg.report("ct", s);
    ASSERT_EQ(report["fields"].size(), 6u) << report.dump(2);
    for (const json &f : report["fields"]) {
        std::string field = f["field"];
        if (field == "limits.cpu") {
            EXPECT_EQ(f["requested"], 1500);
            EXPECT_EQ(f["applied"], 1500);
            EXPECT_FALSE(f.contains("note")) << f.dump();
        } else if (field == "limits.memory" || field == "cpuset") {
            EXPECT_TRUE(f["applied"].is_null());
            EXPECT_NE(f["note"].get<std::string>().find("not applied: the `"), std::string::npos);
        }
    }
    cg.destroy("ct");
}

TEST(FakeTree, ReportSaysWhyAppliedDiffers) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", full());
    std::string r = fake.root() + "/sys/fs/cgroup";
    // what a kernel does: round to pages; and a value changed behind our back
    fake.put(r + "/memory/mobileops/ct/memory.limit_in_bytes", std::to_string(67108864 - 100));
    fake.put(r + "/pids/mobileops/ct/pids.max", "30");
    json report = cg.report("ct", full());
    std::map<std::string, json> by;
    for (const json &f : report["fields"]) by[f["field"]] = f;
    EXPECT_EQ(by["limits.cpu"]["applied"], 1500);
    EXPECT_EQ(by["limits.cpu"]["file"], r + "/cpu/mobileops/ct/cpu.cfs_quota_us");
    EXPECT_EQ(by["requests.cpu"]["applied"], 500); // 512 shares
    EXPECT_FALSE(by["requests.cpu"].contains("note"));
    EXPECT_EQ(by["requests.memory"]["applied"], 33554432);
    EXPECT_NE(by["limits.pids"]["note"].get<std::string>().find("changed outside mobileops"),
              std::string::npos);
    if (::sysconf(_SC_PAGESIZE) > 4096) return;
    EXPECT_NE(by["limits.memory"]["note"].get<std::string>().find("whole pages"), std::string::npos)
        << by["limits.memory"].dump();
    EXPECT_EQ(by["cpuset"]["applied"], "1");
    EXPECT_EQ(report["layout"], cg.layout().summary());
    cg.destroy("ct");
}

TEST(FakeTree, PlacementAtCloneTimeOnlyCompleteOnPureV2) {
    FakeCgroupFs unified(testing::unifiedMounts());
    Cgroups v2(unified.layout(), unified, {"/mobileops"});
    Cgroups::Placement p = v2.placement("ct");
    EXPECT_EQ(p.unifiedDir, unified.root() + "/sys/fs/cgroup/mobileops/ct");
    EXPECT_TRUE(p.complete);

    FakeCgroupFs hybrid(testing::hybridMounts());
    Cgroups h(hybrid.layout(), hybrid, {"/mobileops"});
    p = h.placement("ct");
    EXPECT_EQ(p.unifiedDir, hybrid.root() + "/sys/fs/cgroup/unified/mobileops/ct");
    EXPECT_FALSE(p.complete);

    Cgroups v1(hybrid.layout().withoutUnified(), hybrid, {"/mobileops"});
    EXPECT_TRUE(v1.placement("ct").unifiedDir.empty());
}

TEST(FakeTree, KernelRefusalNamesFileValueAndErrno) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    fake.failWrites("memory.limit_in_bytes", EBUSY);
    std::string msg;
    EXPECT_EQ(codeOf(
                  [&] {
                      cg.update("ct",
                                parseResources(json::parse(R"({"limits": {"memory": 4194304}})")));
                  },
                  &msg),
              -EBUSY);
    EXPECT_EQ(msg, "update cgroup `ct`: write `memory.limit_in_bytes` = `4194304`: Device or "
                   "resource busy");
}

TEST(FakeTree, FailedCreateRemovesWhatItMade) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    fake.failWrites("pids.max", EINVAL);
    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.create("ct", full()); }, &msg), -EINVAL);
    EXPECT_EQ(msg, "create cgroup `ct`: write `pids.max` = `20`: Invalid argument");
    EXPECT_FALSE(std::filesystem::exists(fake.root() + "/sys/fs/cgroup/memory/mobileops"));
    EXPECT_FALSE(std::filesystem::exists(fake.root() + "/sys/fs/cgroup/unified/mobileops"));
}

TEST(FakeTree, AttachWritesEveryHierarchy) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.attach("ct", 4242);
    for (const std::string &d : cg.dirs("ct"))
        EXPECT_EQ(fake.get(d + "/cgroup.procs"), "4242") << d;
    EXPECT_EQ(cg.pids("ct"), std::vector<pid_t>{4242});
    EXPECT_EQ(codeOf([&] { cg.attach("ct", 0); }), MO_E_INVALID);
    EXPECT_EQ(codeOf([&] { cg.attach("nope", 1); }), MO_E_NOT_FOUND);
}

TEST(FakeTree, BadPathsAreRefused) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.create("../escape", {}); }, &msg), MO_E_INVALID);
    EXPECT_EQ(msg, "invalid cgroup path `../escape`: `.` and `..` are not allowed");
    EXPECT_EQ(codeOf([&] { cg.create("/abs", {}); }, &msg), MO_E_INVALID);
    EXPECT_EQ(codeOf([&] { cg.create("", {}); }, &msg), MO_E_INVALID);
    EXPECT_EQ(codeOf([&] { cg.create("a b", {}); }, &msg), MO_E_INVALID);
    EXPECT_FALSE(std::filesystem::exists(fake.root() + "/sys/fs/cgroup/memory/mobileops"));
}

TEST(FakeTree, V1FreezerFreezesAndThaws) {
    FakeCgroupFs fake(testing::legacyMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.freeze("ct");
    EXPECT_TRUE(cg.frozen("ct"));
    EXPECT_EQ(fake.get(cg.dirFor("ct", "freezer") + "/freezer.state"), "FROZEN");
    cg.thaw("ct");
    EXPECT_FALSE(cg.frozen("ct"));
}

TEST(FakeTree, V2FreezeUsesCgroupFreeze) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.freeze("ct");
    EXPECT_TRUE(cg.frozen("ct"));
    EXPECT_TRUE(wrote(fake, "/mobileops/ct/cgroup.freeze", "1"));
    cg.thaw("ct");
    EXPECT_FALSE(cg.frozen("ct"));
}

TEST(FakeTree, NoFreezerIsUnsupported) {
    auto mounts = testing::legacyMounts();
    mounts.pop_back(); // freezer
    FakeCgroupFs fake(mounts);
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    EXPECT_EQ(codeOf([&] { cg.freeze("ct"); }), MO_E_UNSUPPORTED);
}

TEST(FakeTree, V1KillFreezesSignalsEveryProcessAndThaws) {
    FakeCgroupFs fake(testing::legacyMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.create("ct/sub", {}); // a child cgroup the container made
    cg.attach("ct", 101);
    cg.attach("ct/sub", 102);
    fake.killable = {101, 102};
    cg.kill("ct", SIGKILL);
    std::vector<std::pair<pid_t, int>> expected = {{101, SIGKILL}, {102, SIGKILL}};
    EXPECT_EQ(fake.signals, expected);
    std::string fz = cg.dirFor("ct", "freezer") + "/freezer.state";
    std::vector<std::string> states;
    for (const auto &[path, value] : fake.writes)
        if (path == fz) states.push_back(value);
    EXPECT_EQ(states, (std::vector<std::string>{"FROZEN", "THAWED"}));
    EXPECT_TRUE(cg.pids("ct").empty());
    cg.destroy("ct");
    EXPECT_FALSE(cg.exists("ct"));
}

// The signal a frozen process was sent ends it as it thaws, and its monitor removes the
// cgroup while the kill still waits for the thaw: the kill has done its work.
TEST(FakeTree, KillSucceedsWhenTheCgroupGoesAsItThaws) {
    for (auto mounts : {testing::legacyMounts(), testing::unifiedMounts()}) {
        FakeCgroupFs fake(mounts);
        Cgroups cg(fake.layout(), fake, {"/mobileops"});
        cg.create("ct", {});
        cg.attach("ct", 101);
        std::vector<std::string> dirs = cg.dirs("ct");
        fake.afterWrite = [&](const std::string &, const std::string &value) {
            if (value == "THAWED" || value == "0")
                for (const std::string &d : dirs) std::filesystem::remove_all(d);
        };
        EXPECT_NO_THROW(cg.kill("ct", SIGTERM)) << mounts.size() << " mounts";
        EXPECT_EQ(fake.signals, (std::vector<std::pair<pid_t, int>>{{101, SIGTERM}}));
        EXPECT_FALSE(cg.exists("ct"));
    }
}

TEST(FakeTree, SignalToFrozenCgroupKeepsItFrozen) {
    FakeCgroupFs fake(testing::legacyMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.attach("ct", 101);
    cg.freeze("ct");
    cg.kill("ct", SIGTERM);
    EXPECT_TRUE(cg.frozen("ct"));
    EXPECT_EQ(fake.signals, (std::vector<std::pair<pid_t, int>>{{101, SIGTERM}}));
}

TEST(FakeTree, HybridSigkillUsesCgroupKill) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", {});
    cg.attach("ct", 101);
    cg.kill("ct", SIGKILL);
    EXPECT_TRUE(wrote(fake, "/unified/mobileops/ct/cgroup.kill", "1"));
    EXPECT_TRUE(fake.signals.empty());
    EXPECT_TRUE(cg.pids("ct").empty());
}

TEST(FakeTree, KillTimesOutWhenProcessesStay) {
    FakeCgroupFs fake(testing::legacyMounts());
    Options o{"/mobileops"};
    o.killTimeoutMs = 0;
    Cgroups cg(fake.layout(), fake, o);
    cg.create("ct", {});
    cg.attach("ct", 101); // not killable: stays
    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.kill("ct", SIGKILL); }, &msg), MO_E_STATE);
    EXPECT_NE(msg.find("processes remain after 0ms: `101`"), std::string::npos) << msg;
}

TEST(FakeTree, DestroyWithProcessesIsAStateError) {
    FakeCgroupFs fake(testing::hybridMounts());
    Options o{"/mobileops"};
    o.destroyRetryMs = 5;
    Cgroups cg(fake.layout(), fake, o);
    cg.create("ct", {});
    cg.attach("ct", 77);
    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.destroy("ct"); }, &msg), MO_E_STATE);
    EXPECT_EQ(msg, "destroy cgroup `ct`: 1 process remains: `77`");
}

TEST(FakeTree, StatsOnHybrid) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", full());
    json s = cg.stats("ct");
    EXPECT_EQ(s["cpu"]["usage_ns"], 123456);
    EXPECT_EQ(s["cpu"]["limit_millicores"], 1500);
    EXPECT_GT(s["cpu"]["user_ns"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(s["memory"]["current"], 4096);
    EXPECT_EQ(s["memory"]["peak"], 8192);
    EXPECT_EQ(s["memory"]["limit"], 67108864);
    EXPECT_EQ(s["memory"]["oom_kills"], 0);
    EXPECT_EQ(s["pids"]["limit"], 20);
    EXPECT_EQ(s["io"]["read_bytes"], 4096);
    EXPECT_EQ(s["io"]["write_ops"], 2);
    EXPECT_EQ(s["frozen"], false);
    EXPECT_EQ(codeOf([&] { cg.stats("missing"); }), MO_E_NOT_FOUND);
}

TEST(FakeTree, StatsOnUnified) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", full());
    json s = cg.stats("ct");
    EXPECT_EQ(s["cpu"]["usage_ns"], 1500000);
    EXPECT_EQ(s["cpu"]["limit_millicores"], 1500);
    EXPECT_EQ(s["memory"]["limit"], 67108864);
    EXPECT_EQ(s["memory"]["peak"], 8192);
    EXPECT_EQ(s["pids"]["limit"], 20);
    EXPECT_TRUE(s["memory"]["limit"].is_number());
}

Settings devices(const char *list) {
    return parseResources(json::parse(std::string(R"({"devices": )") + list + "}"));
}

TEST(FakeTree, HybridDeviceRulesGoToTheV1ControllerAndTheCgroup2Program) {
    FakeCgroupFs fake(testing::hybridMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    Settings s = devices(R"([{"allow": false}, {"allow": true, "type": "c", "major": 1,
                             "minor": 3}, {"allow": true, "type": "b", "access": "m"}])");
    cg.create("ct", s);
    std::string v1 = fake.root() + "/sys/fs/cgroup/devices/mobileops/ct";
    std::string v2 = fake.root() + "/sys/fs/cgroup/unified/mobileops/ct";
    std::vector<std::pair<std::string, std::string>> writes;
    for (const auto &[path, value] : fake.writes)
        if (path.rfind(v1 + "/", 0) == 0) writes.emplace_back(path.substr(v1.size() + 1), value);
    std::vector<std::pair<std::string, std::string>> expected = {
        {"devices.deny", "a"}, {"devices.allow", "c 1:3 rwm"}, {"devices.allow", "b *:* m"}};
    EXPECT_EQ(writes, expected);
    ASSERT_EQ(fake.devicePrograms.count(v2), 1u);
    EXPECT_EQ(fake.devicePrograms[v2], *s.devices);
    json report = cg.report("ct", s);
    ASSERT_EQ(report["fields"].size(), 1u) << report.dump();
    EXPECT_EQ(report["fields"][0]["field"], "devices");
    EXPECT_EQ(report["fields"][0]["file"], v1 + "/devices.list");
    EXPECT_FALSE(report["fields"][0].contains("note")) << report.dump();
    auto f = cg.features();
    EXPECT_NE(std::find(f.begin(), f.end(), "cgroup.devices"), f.end());
    cg.destroy("ct");
}

TEST(FakeTree, UnifiedDeviceRulesAreAProgramAndUpdateReplacesIt) {
    FakeCgroupFs fake(testing::unifiedMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    cg.create("ct", devices(R"([{"allow": false}])"));
    std::string d = fake.root() + "/sys/fs/cgroup/mobileops/ct";
    ASSERT_EQ(fake.devicePrograms.count(d), 1u);
    EXPECT_EQ(fake.devicePrograms[d].size(), 1u);
    cg.update("ct", devices(R"([{"allow": true}, {"allow": false, "type": "b"}])"));
    EXPECT_EQ(fake.devicePrograms[d].size(), 2u);
    json report = cg.report("ct", devices(R"([{"allow": true}])"));
    EXPECT_EQ(report["fields"][0]["note"], "a BPF device program on cgroup2 (not read back)");
    // What the backend's program load says reaches the caller with the step named.
    cg.destroy("ct");
    std::string m;
    EXPECT_EQ(codeOf([&] { cg.update("ct", devices("[]")); }, &m), MO_E_NOT_FOUND);
}

TEST(FakeTree, DeviceRulesWithoutDevicesControllerOrCgroup2AreUnsupported) {
    FakeCgroupFs fake(testing::legacyMounts());
    Cgroups cg(fake.layout(), fake, {"/mobileops"});
    std::string m;
    EXPECT_EQ(codeOf([&] { cg.create("ct", devices(R"([{"allow": false}])")); }, &m),
              MO_E_UNSUPPORTED);
    EXPECT_NE(m.find("device rules: the `devices` controller is not available"), std::string::npos)
        << m;
    EXPECT_FALSE(cg.exists("ct")) << "refused before anything was made";
    Settings s = devices(R"([{"allow": false}])");
    s.ignoreUnsupported = true;
    std::vector<Unsupported> skipped;
    cg.create("ct", s, &skipped);
    ASSERT_EQ(skipped.size(), 1u);
    EXPECT_EQ(skipped[0].field, "devices");
    cg.destroy("ct");
}

TEST(FakeTree, V1DeviceListThatCannotBeHeldIsRefused) {
    auto mounts = testing::legacyMounts();
    mounts.push_back({1, "/sys/fs/cgroup/devices", {"devices"}});
    FakeCgroupFs withDevices(mounts);
    Cgroups cg(withDevices.layout(), withDevices, {"/mobileops"});
    std::string m;
    EXPECT_EQ(codeOf(
                  [&] {
                      cg.create("ct", devices(R"([{"allow": false}, {"allow": true, "type": "c"},
                          {"allow": false, "type": "c", "major": 1, "minor": 3}])"));
                  },
                  &m),
              MO_E_UNSUPPORTED);
    EXPECT_NE(m.find("devices[2]: deny `c 1:3 rwm` inside the earlier allow"), std::string::npos)
        << m;
    EXPECT_FALSE(cg.exists("ct")) << "a failed create removes what it made";
}

TEST(FakeTree, Features) {
    {
        FakeCgroupFs fake(testing::hybridMounts());
        Cgroups cg(fake.layout(), fake);
        auto f = cg.features();
        for (const char *name : {"cgroup.v1", "cgroup.v2", "cgroup.hybrid", "cgroup.freeze"})
            EXPECT_NE(std::find(f.begin(), f.end(), name), f.end()) << name;
    }
    {
        FakeCgroupFs fake(testing::legacyMounts());
        Cgroups cg(fake.layout(), fake);
        EXPECT_EQ(cg.features(), (std::vector<std::string>{"cgroup.v1", "cgroup.freeze"}));
    }
}

} // namespace
} // namespace mobileops::cgroup
