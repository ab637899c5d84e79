// Root integration tests on this host's real hierarchies (v1, v2 or hybrid). Each test
// works under its own parent `mobileops-test-<pid>-<n>` below the test process's own
// cgroups; a guard kills what the test started and removes every directory, also when
// the test fails.
#include "Cgroups.h"
#include "DeviceBpf.h"
#include "ErrorCode.h"
#include "HostDisk.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

namespace mobileops::cgroup {
namespace {

using nlohmann::json;
using testing::hostDisk;
using namespace std::chrono_literals;

std::string readFile(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    std::string out = s.str();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

char procState(pid_t pid) {
    std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
    auto close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

void reap() {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

using testing::codeOf;

class CgroupRoot : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        // Orphans of forking children come back to us to be reaped.
        ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    }

    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
        _layout = Layout::detect();
        if (_layout.mode() == Mode::None) GTEST_SKIP() << "no cgroup hierarchy is mounted";
        static int counter = 0;
        _parent = "mobileops-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
        _cg = std::make_unique<Cgroups>(_layout, realFs(), Options{_parent});
        std::string why;
        if (!_cg->canCreate(why)) GTEST_SKIP() << why;
    }

    // The guard: runs after every test, whatever happened.
    void TearDown() override {
        if (!_cg) return;
        for (pid_t pid : _children) ::kill(pid, SIGKILL);
        try {
            _cg->kill(kPath, SIGKILL);
        } catch (const Error &) {
        }
        reap();
        for (const Hierarchy *h : _layout.used()) {
            std::string base = h->dirOf(joinPath(h->ownPath, _parent));
            if (h->version == 1 && h->has("freezer"))
                realFs().write(base + "/" + std::string(kPath) + "/freezer.state", "THAWED");
            removeTree(base);
            EXPECT_FALSE(realFs().exists(base)) << "left behind: " << base;
        }
        for (pid_t pid : _children) ::waitpid(pid, nullptr, WNOHANG);
    }

    static void removeTree(const std::string &dir) {
        std::vector<std::string> children;
        if (realFs().subdirs(dir, children) == 0)
            for (const std::string &c : children) removeTree(dir + "/" + c);
        for (int i = 0; i < 200 && realFs().rmdir(dir) == -EBUSY; ++i) {
            reap();
            realFs().sleepMs(5);
        }
    }

    // Fork a child, attach it, then let it run `body(fd)`; `fd` is the write end of a
    // pipe whose read end goes to *reportRead (closed when not asked for).
    pid_t spawn(const std::function<void(int reportFd)> &body, int *reportRead = nullptr) {
        int go[2], report[2];
        EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(report, O_CLOEXEC), 0);
        pid_t pid = ::fork();
        if (pid == 0) {
            ::close(go[1]);
            ::close(report[0]);
            char c;
            if (::read(go[0], &c, 1) != 1) ::_exit(1);
            body(report[1]);
            ::_exit(0);
        }
        ::close(go[0]);
        ::close(report[1]);
        _children.push_back(pid);
        _cg->attach(kPath, pid);
        EXPECT_EQ(::write(go[1], "x", 1), 1);
        ::close(go[1]);
        if (reportRead)
            *reportRead = report[0];
        else
            ::close(report[0]);
        return pid;
    }

    // Read a decimal number the child reports, waiting up to 10s.
    static long readReport(int fd) {
        struct pollfd p = {fd, POLLIN, 0};
        if (::poll(&p, 1, 10000) != 1) return -1;
        char buf[32] = {};
        ssize_t n = ::read(fd, buf, sizeof buf - 1);
        return n > 0 ? std::atol(buf) : -1;
    }

    std::string file(const char *controller, const char *name) {
        return readFile(_cg->dirFor(kPath, controller) + "/" + name);
    }
    bool v1(const char *controller) {
        const Hierarchy *h = _layout.owner(controller);
        return h && h->version == 1;
    }
    std::uint64_t usage() { return _cg->stats(kPath)["cpu"].value("usage_ns", 0ULL); }

    static constexpr const char *kPath = "ct";
    Layout _layout;
    std::string _parent;
    std::unique_ptr<Cgroups> _cg;
    std::vector<pid_t> _children;
};

// Fault in `bytes` of anonymous memory (through volatile, so it is not optimised away).
void touch(size_t bytes) {
    void *p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    volatile char *c = static_cast<volatile char *>(p);
    for (size_t i = 0; i < bytes; i += 4096) c[i] = 1;
}

void busy(int) {
    volatile unsigned long spins = 0;
    for (;;) spins = spins + 1;
}

TEST_F(CgroupRoot, CreateMakesEveryHierarchyAndDestroyRemovesIt) {
    _cg->create(kPath, {});
    auto dirs = _cg->dirs(kPath);
    EXPECT_FALSE(dirs.empty());
    for (const std::string &d : dirs) EXPECT_TRUE(realFs().exists(d)) << d;
    _cg->destroy(kPath);
    for (const std::string &d : dirs) EXPECT_FALSE(realFs().exists(d)) << d;
    EXPECT_FALSE(_cg->exists(kPath));
}

TEST_F(CgroupRoot, LimitsReadBackFromTheKernelFiles) {
    for (const char *c : {"cpu", "memory", "pids", "cpuset"})
        if (!_layout.owner(c)) GTEST_SKIP() << "no " << c << " controller here";
    _cg->create(kPath, parseResources(json::parse(R"({
        "requests": {"cpu": 250, "memory": 33554432},
        "limits": {"cpu": 500, "memory": 67108864, "pids": 50},
        "cpuset": "0"})")));
    if (v1("memory")) {
        EXPECT_EQ(file("memory", "memory.limit_in_bytes"), "67108864");
        EXPECT_EQ(file("memory", "memory.soft_limit_in_bytes"), "33554432");
    } else {
        EXPECT_EQ(file("memory", "memory.max"), "67108864");
        EXPECT_EQ(file("memory", "memory.low"), "33554432");
    }
    if (v1("cpu")) {
        EXPECT_EQ(file("cpu", "cpu.cfs_quota_us"), "50000");
        EXPECT_EQ(file("cpu", "cpu.cfs_period_us"), "100000");
        EXPECT_EQ(file("cpu", "cpu.shares"), "256");
    } else {
        EXPECT_EQ(file("cpu", "cpu.max"), "50000 100000");
        EXPECT_EQ(file("cpu", "cpu.weight"), std::to_string(weightFromShares(256)));
    }
    EXPECT_EQ(file("pids", "pids.max"), "50");
    EXPECT_EQ(file("cpuset", "cpuset.cpus"), "0");

    _cg->update(kPath, parseResources(json::parse(
                           R"({"limits": {"memory": 134217728, "pids": null, "cpu": null}})")));
    EXPECT_EQ(file("memory", v1("memory") ? "memory.limit_in_bytes" : "memory.max"), "134217728");
    EXPECT_EQ(file("pids", "pids.max"), "max");
    EXPECT_EQ(file("cpu", v1("cpu") ? "cpu.cfs_quota_us" : "cpu.max"),
              v1("cpu") ? "-1" : "max 100000");
    json s = _cg->stats(kPath);
    EXPECT_EQ(s["memory"]["limit"], 134217728);
    EXPECT_TRUE(s["pids"]["limit"].is_null());
}

TEST_F(CgroupRoot, ReportComparesRequestWithTheKernelsValues) {
    for (const char *c : {"cpu", "memory", "pids"})
        if (!_layout.owner(c)) GTEST_SKIP() << "no " << c << " controller here";
    // 100 bytes past 64Mi: the kernel keeps whole pages
    Settings s = parseResources(json::parse(R"({
        "requests": {"cpu": 500},
        "limits": {"cpu": 1500, "memory": 67108964, "pids": 50}})"));
    _cg->create(kPath, s);
    json report = _cg->report(kPath, s);
    std::map<std::string, json> by;
    for (const json &f : report["fields"]) by[f["field"]] = f;
    ASSERT_EQ(by.size(), 4u) << report.dump(2);
    EXPECT_EQ(by["limits.memory"]["requested"], 67108964);
    EXPECT_EQ(by["limits.memory"]["applied"], 67108864);
    EXPECT_NE(by["limits.memory"].value("note", "").find("whole pages"), std::string::npos)
        << by["limits.memory"].dump();
    EXPECT_EQ(by["limits.cpu"]["applied"], 1500);
    EXPECT_FALSE(by["limits.cpu"].contains("note")) << by["limits.cpu"].dump();
    EXPECT_EQ(by["limits.pids"]["applied"], 50);
    EXPECT_EQ(by["limits.pids"]["file"], _cg->dirFor(kPath, "pids") + "/pids.max");
    if (v1("cpu")) {
        EXPECT_EQ(by["requests.cpu"]["applied"], 500); // 512 shares
    } else {
        // cpu.weight 20 maps back to a little less
        EXPECT_LT(by["requests.cpu"]["applied"].get<int>(), 500);
        EXPECT_NE(by["requests.cpu"].value("note", "").find("cpu.weight"), std::string::npos);
    }
    // changed behind our back
    _cg->update(kPath, parseResources(json::parse(R"({"limits": {"pids": 60}})")));
    report = _cg->report(kPath, s);
    for (const json &f : report["fields"]) {
        if (f["field"] != "limits.pids") continue;
        EXPECT_NE(f.value("note", "").find("changed outside mobileops"), std::string::npos);
    }
}

TEST_F(CgroupRoot, IgnoreUnsupportedRunsWithoutWhatTheHostLacks) {
    // v1 memory: this host's hierarchies with the memory one left out, as on a host that
    // lacks it. v2 memory: swappiness, which cgroup v2 does not have.
    const Hierarchy *memory = _layout.owner("memory");
    if (!memory || !_layout.owner("pids")) GTEST_SKIP() << "no memory or pids controller here";
    Layout layout = _layout;
    std::string field = "memorySwappiness", expect = "cgroup v2 has no swappiness";
    Settings s = parseResources(
        json::parse(R"({"limits": {"memory": 67108864, "pids": 30}, "memorySwappiness": 5})"));
    if (memory->version == 1) {
        std::istringstream in(readFile("/proc/self/mountinfo"));
        std::string kept;
        for (std::string line; std::getline(in, line);)
            if (line.find(" " + memory->mountpoint + " ") == std::string::npos) kept += line + "\n";
        layout = Layout::parse(kept, readFile("/proc/self/cgroup"));
        ASSERT_EQ(layout.owner("memory"), nullptr);
        field = "limits.memory";
        expect = "memory limit: the `memory` controller is not available";
        s = parseResources(json::parse(R"({"limits": {"memory": 67108864, "pids": 30}})"));
    }
    Cgroups cg(layout, realFs(), Options{_parent});

    std::string msg;
    EXPECT_EQ(codeOf([&] { cg.create(kPath, s); }, &msg), MO_E_UNSUPPORTED);
    EXPECT_NE(msg.find(expect), std::string::npos) << msg;
    EXPECT_FALSE(cg.exists(kPath));

    s.ignoreUnsupported = true;
    std::vector<Unsupported> skipped;
    cg.create(kPath, s, &skipped);
    ASSERT_EQ(skipped.size(), 1u);
    EXPECT_EQ(skipped[0].field, field);
    EXPECT_EQ(readFile(cg.dirFor(kPath, "pids") + "/pids.max"), "30");
    json report = cg.report(kPath, s);
    for (const json &f : report["fields"]) {
        if (f["field"] != field) continue;
        EXPECT_TRUE(f["applied"].is_null());
        EXPECT_NE(f.value("note", "").find("not applied"), std::string::npos);
    }
    cg.destroy(kPath);
}

TEST_F(CgroupRoot, SwapLimitLandsOrIsUnsupported) {
    if (!_layout.owner("memory")) GTEST_SKIP() << "no memory controller here";
    Settings s =
        parseResources(json::parse(R"({"limits": {"memory": 67108864}, "memorySwap": 134217728})"));
    std::string msg;
    int rc = codeOf([&] { _cg->create(kPath, s); }, &msg);
    if (rc == MO_E_UNSUPPORTED) {
        EXPECT_NE(msg.find(v1("memory") ? "memory.memsw.limit_in_bytes" : "memory.swap.max"),
                  std::string::npos)
            << msg;
        return;
    }
    ASSERT_EQ(rc, 0) << msg;
    if (v1("memory")) {
        EXPECT_EQ(file("memory", "memory.memsw.limit_in_bytes"), "134217728");
        _cg->update(kPath, parseResources(json::parse(R"({"memorySwappiness": 7})")));
        EXPECT_EQ(file("memory", "memory.swappiness"), "7");
        // both grow: memory+swap must go first or the kernel refuses the memory limit
        _cg->update(kPath, parseResources(json::parse(
                               R"({"limits": {"memory": 268435456}, "memorySwap": 536870912})")));
        EXPECT_EQ(file("memory", "memory.limit_in_bytes"), "268435456");
        EXPECT_EQ(file("memory", "memory.memsw.limit_in_bytes"), "536870912");
    } else {
        EXPECT_EQ(file("memory", "memory.swap.max"), "67108864");
        EXPECT_EQ(codeOf([&] {
                      _cg->update(kPath, parseResources(json::parse(R"({"memorySwappiness": 7})")));
                  }),
                  MO_E_UNSUPPORTED);
    }
}

TEST_F(CgroupRoot, MemoryLimitAloneGetsDockersDefaultSwap) {
    if (!_layout.owner("memory")) GTEST_SKIP() << "no memory controller here";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"memory": 67108864}})")));
    const char *swapFile = v1("memory") ? "memory.memsw.limit_in_bytes" : "memory.swap.max";
    if (!realFs().exists(_cg->dirFor(kPath, "memory") + "/" + swapFile))
        GTEST_SKIP() << "no swap accounting here (" << swapFile << ")";
    // memory plus swap is twice the limit (v2: the swap part alone equals the limit)
    EXPECT_EQ(file("memory", swapFile), v1("memory") ? "134217728" : "67108864");
    // and follows a new limit (growing: the kernel needs memory+swap to go first on v1)
    _cg->update(kPath, parseResources(json::parse(R"({"limits": {"memory": 268435456}})")));
    EXPECT_EQ(file("memory", swapFile), v1("memory") ? "536870912" : "268435456");
}

TEST_F(CgroupRoot, BlkioWeightAndThrottleLandOrAreUnsupported) {
    if (!_layout.owner("blkio")) GTEST_SKIP() << "no blkio / io controller here";
    // The disk holding `/`; throttles take whole disks only.
    struct stat st {};
    ASSERT_EQ(::stat("/", &st), 0);
    std::string dev = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
    if (major(st.st_dev) == 0 || ::access(("/sys/dev/block/" + dev).c_str(), F_OK) != 0 ||
        ::access(("/sys/dev/block/" + dev + "/partition").c_str(), F_OK) == 0)
        GTEST_SKIP() << "`/` is not on a whole block device (" << dev << ")";
    json throttle = {{"major", major(st.st_dev)},
                     {"minor", minor(st.st_dev)},
                     {"readBps", 1048576},
                     {"writeIops", 100}};
    _cg->create(kPath, parseResources(json{{"deviceThrottle", {throttle}}}));
    if (v1("blkio")) {
        EXPECT_EQ(file("blkio", "blkio.throttle.read_bps_device"), dev + " 1048576");
        EXPECT_EQ(file("blkio", "blkio.throttle.write_iops_device"), dev + " 100");
    } else {
        std::string max = file("blkio", "io.max");
        EXPECT_NE(max.find(dev + " rbps=1048576 wbps=max riops=max wiops=100"), std::string::npos)
            << max;
    }

    std::string msg;
    int rc = codeOf([&] { _cg->update(kPath, parseResources(json{{"blkioWeight", 300}})); }, &msg);
    if (rc == MO_E_UNSUPPORTED) {
        EXPECT_NE(msg.find(v1("blkio") ? "`blkio.weight` nor `blkio.bfq.weight`"
                                       : "`io.weight` nor `io.bfq.weight`"),
                  std::string::npos)
            << msg;
        return;
    }
    ASSERT_EQ(rc, 0) << msg;
    for (const char *f : {"blkio.weight", "blkio.bfq.weight", "io.weight", "io.bfq.weight"}) {
        std::string text = file("blkio", f);
        if (!text.empty()) {
            EXPECT_NE(text.find("300"), std::string::npos) << f << ": " << text;
            return;
        }
    }
    ADD_FAILURE() << "no weight file holds 300";
}

TEST_F(CgroupRoot, AttachPutsTheProcessInEveryHierarchy) {
    _cg->create(kPath, {});
    pid_t pid = spawn([](int) { ::pause(); });
    for (const std::string &d : _cg->dirs(kPath))
        EXPECT_EQ(readFile(d + "/cgroup.procs"), std::to_string(pid)) << d;
    EXPECT_EQ(_cg->pids(kPath), std::vector<pid_t>{pid});
    std::string msg;
    EXPECT_EQ(codeOf([&] { _cg->attach(kPath, 999999999); }, &msg), -ESRCH);
    EXPECT_NE(msg.find("attach `999999999` to cgroup `ct`"), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such process"), std::string::npos) << msg;
}

TEST_F(CgroupRoot, PidsLimitCapsAForkBomb) {
    if (!_layout.owner("pids")) GTEST_SKIP() << "no pids controller here";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"pids": 10}})")));
    int report = -1;
    spawn(
        [](int fd) {
            int made = 0;
            for (int i = 0; i < 40; ++i) {
                pid_t p = ::fork();
                if (p == 0) {
                    ::pause();
                    ::_exit(0);
                }
                if (p > 0) ++made;
            }
            char buf[16];
            int n = std::snprintf(buf, sizeof buf, "%d", made);
            (void)!::write(fd, buf, static_cast<size_t>(n));
            ::pause();
        },
        &report);
    EXPECT_EQ(readReport(report), 9); // the bomb itself is the tenth
    ::close(report);
    json s = _cg->stats(kPath);
    EXPECT_EQ(s["pids"]["current"], 10);
    EXPECT_EQ(s["pids"]["limit"], 10);
    EXPECT_GE(s["pids"].value("limit_hits", 1), 1);
    EXPECT_EQ(_cg->pids(kPath).size(), 10u);
    _cg->kill(kPath, SIGKILL);
    EXPECT_TRUE(_cg->pids(kPath).empty());
    _cg->destroy(kPath);
}

TEST_F(CgroupRoot, FreezeStopsABusyChildAndThawResumesIt) {
    _cg->create(kPath, {});
    pid_t pid = spawn(busy);
    std::this_thread::sleep_for(100ms);
    _cg->freeze(kPath);
    EXPECT_TRUE(_cg->frozen(kPath));
    EXPECT_TRUE(_cg->stats(kPath)["frozen"].get<bool>());
    char state = procState(pid);
    EXPECT_TRUE(state == 'D' || state == 'S') << "state " << state;
    std::uint64_t before = usage();
    std::this_thread::sleep_for(300ms);
    std::uint64_t during = usage();
    EXPECT_LT(during - before, 5'000'000u) << "a frozen child burnt CPU";
    _cg->thaw(kPath);
    EXPECT_FALSE(_cg->frozen(kPath));
    std::this_thread::sleep_for(300ms);
    EXPECT_GT(usage() - during, 50'000'000u) << "the thawed child does not run";
    EXPECT_EQ(procState(pid), 'R');
}

// The fork-and-exit chain: the process in the cgroup changes all the time, so a killer
// that only reads cgroup.procs and signals what it saw always misses the newest one.
void forkChain(int) {
    for (;;) {
        pid_t p = ::fork();
        if (p > 0) ::_exit(0);
    }
}

// Children that fork more children that each spin.
void forkTree(int) {
    for (;;) {
        if (::fork() == 0) continue;
        volatile int spins = 0;
        while (spins < 100000) spins = spins + 1;
    }
}

class CgroupKill : public CgroupRoot, public ::testing::WithParamInterface<bool> {};

TEST_P(CgroupKill, SigkillLeavesNothingEvenForForkingChildren) {
    bool withoutUnified = GetParam();
    if (withoutUnified) {
        if (!_layout.unified() || _layout.mode() != Mode::Hybrid)
            GTEST_SKIP() << "the v1-only kill path is exercised here on hybrid hosts only";
        if (!_layout.owner("freezer")) GTEST_SKIP() << "no v1 freezer here";
        // The same host seen without its cgroup2 mount: no cgroup.kill, the freezer path.
        _cg = std::make_unique<Cgroups>(_layout.withoutUnified(), realFs(), Options{_parent});
    }
    if (!_layout.owner("pids")) GTEST_SKIP() << "no pids controller to bound the fork loop";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"pids": 64}})")));
    spawn(forkChain);
    spawn(forkTree);
    std::this_thread::sleep_for(300ms);
    EXPECT_GT(_cg->pids(kPath).size(), 1u);
    _cg->kill(kPath, SIGKILL);
    EXPECT_TRUE(_cg->pids(kPath).empty());
    reap();
    auto dirs = _cg->dirs(kPath);
    _cg->destroy(kPath);
    for (const std::string &d : dirs) EXPECT_FALSE(realFs().exists(d)) << d;
}

INSTANTIATE_TEST_SUITE_P(Paths, CgroupKill, ::testing::Values(false, true), [](const auto &info) {
    return info.param ? std::string("FreezeSignalThaw") : std::string("BestAvailable");
});

TEST_F(CgroupRoot, SigkillReachesAFrozenCgroup) {
    _cg->create(kPath, {});
    spawn(busy);
    spawn([](int) { ::pause(); });
    _cg->freeze(kPath);
    _cg->kill(kPath, SIGKILL);
    EXPECT_TRUE(_cg->pids(kPath).empty());
    _cg->destroy(kPath);
}

TEST_F(CgroupRoot, SigtermReachesEveryProcess) {
    _cg->create(kPath, {});
    for (int i = 0; i < 3; ++i) spawn([](int) { ::pause(); });
    _cg->kill(kPath, SIGTERM);
    for (int i = 0; i < 200 && !_cg->pids(kPath).empty(); ++i) {
        reap();
        std::this_thread::sleep_for(5ms);
    }
    EXPECT_TRUE(_cg->pids(kPath).empty());
}

TEST_F(CgroupRoot, DestroyRefusesWhileProcessesRemain) {
    _cg->create(kPath, {});
    pid_t pid = spawn([](int) { ::pause(); });
    std::string msg;
    EXPECT_EQ(codeOf([&] { _cg->destroy(kPath); }, &msg), MO_E_STATE);
    EXPECT_EQ(msg, "destroy cgroup `ct`: 1 process remains: `" + std::to_string(pid) + "`");
    _cg->kill(kPath, SIGKILL);
    _cg->destroy(kPath);
    EXPECT_FALSE(_cg->exists(kPath));
}

TEST_F(CgroupRoot, StatsCarryRealFigures) {
    if (!_layout.owner("memory") || !_layout.owner("pids"))
        GTEST_SKIP() << "needs the memory and pids controllers";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"memory": 67108864}})")));
    // v1 leaves earlier charges with the old cgroup: allocate after joining.
    spawn([](int fd) {
        touch(4 << 20);
        busy(fd);
    });
    std::this_thread::sleep_for(300ms);
    json s = _cg->stats(kPath);
    EXPECT_GT(s["cpu"].value("usage_ns", 0ULL), 100'000'000u) << s.dump();
    EXPECT_GT(s["memory"].value("current", 0ULL), 0u) << s.dump();
    EXPECT_GE(s["memory"].value("peak", 0ULL), s["memory"].value("current", 0ULL)) << s.dump();
    EXPECT_EQ(s["memory"]["limit"], 67108864);
    EXPECT_EQ(s["pids"]["current"], 1);
    EXPECT_TRUE(s.contains("io")) << s.dump();
}

TEST_F(CgroupRoot, MemoryLimitOomKills) {
    if (!_layout.owner("memory")) GTEST_SKIP() << "no memory controller here";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"memory": 33554432}})")));
    pid_t pid = spawn([](int) {
        touch(128 << 20);
        ::_exit(0);
    });
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "exited with " << WEXITSTATUS(status);
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
    json s = _cg->stats(kPath);
    if (s["memory"].contains("oom_kills")) {
        EXPECT_GE(s["memory"]["oom_kills"], 1) << s.dump();
    }
}

TEST_F(CgroupRoot, LoweringMemoryBelowUsageReportsTheKernelRefusal) {
    if (!v1("memory")) GTEST_SKIP() << "cgroup2 OOM-kills instead of refusing a lower memory.max";
    _cg->create(kPath, {});
    int report = -1;
    spawn(
        [](int fd) {
            touch(24 << 20);
            (void)!::write(fd, "1", 1);
            ::pause();
        },
        &report);
    ASSERT_EQ(readReport(report), 1);
    ::close(report);
    std::string msg;
    int code = codeOf(
        [&] {
            _cg->update(kPath, parseResources(json::parse(R"({"limits": {"memory": 8388608}})")));
        },
        &msg);
    EXPECT_EQ(code, -EBUSY) << msg;
    EXPECT_EQ(msg, "update cgroup `ct`: write `memory.limit_in_bytes` = `8388608`: Device or "
                   "resource busy");
}

TEST_F(CgroupRoot, CpuLimitHoldsABusyLoopNearHalfACore) {
    if (!_layout.owner("cpu")) GTEST_SKIP() << "no cpu controller here";
    _cg->create(kPath, parseResources(json::parse(R"({"limits": {"cpu": 500}})")));
    spawn(busy);
    std::this_thread::sleep_for(200ms);
    auto t0 = std::chrono::steady_clock::now();
    std::uint64_t u0 = usage();
    std::this_thread::sleep_for(1500ms);
    std::uint64_t u1 = usage();
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cores = static_cast<double>(u1 - u0) / 1e9 / wall;
    // The limit is a ceiling; a loaded host may give the loop less than that, not more.
    EXPECT_GT(cores, 0.15);
    EXPECT_LT(cores, 0.65);
    json s = _cg->stats(kPath);
    EXPECT_GT(s["cpu"].value("throttled_periods", 0ULL), 0u) << s.dump();
}

// --- device rules ----------------------------------------------------------------------

// What a process under device rules may do, as errno values (0: it worked): open
// /dev/null read-write, /dev/zero for reading, mknod a node of the host's disk in `dir`
// and open that node.
struct DeviceProbe {
    int null = -1, zero = -1, mknod = -1, disk = -1;
};

// In a forked child: try each and write the four numbers to `fd`.
void probeDevices(int fd, const std::string &dir, std::pair<unsigned, unsigned> disk) {
    auto tryOpen = [](const std::string &path, int flags) {
        int f = ::open(path.c_str(), flags | O_CLOEXEC);
        if (f < 0) return errno;
        ::close(f);
        return 0;
    };
    std::string node = dir + "/disk";
    ::unlink(node.c_str()); // an earlier probe's
    int null = tryOpen("/dev/null", O_RDWR), zero = tryOpen("/dev/zero", O_RDONLY);
    int mk =
        ::mknod(node.c_str(), S_IFBLK | 0600, makedev(disk.first, disk.second)) < 0 ? errno : 0;
    int open = mk == 0 ? tryOpen(node, O_RDONLY) : -1;
    std::string out = std::to_string(null) + " " + std::to_string(zero) + " " + std::to_string(mk) +
                      " " + std::to_string(open) + "\n";
    if (::write(fd, out.data(), out.size()) < 0) ::_exit(3);
}

DeviceProbe readProbe(int fd) {
    DeviceProbe p;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) != 1) return p;
    char buf[64] = {};
    if (::read(fd, buf, sizeof buf - 1) > 0)
        std::sscanf(buf, "%d %d %d %d", &p.null, &p.zero, &p.mknod, &p.disk);
    ::close(fd);
    return p;
}

// Only /dev/null to open, and mknod of anything.
constexpr const char *kNullOnly = R"({"devices": [{"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "access": "m"}, {"allow": true, "type": "b", "access": "m"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})";

class TempNodeDir {
public:
    TempNodeDir() {
        char tmpl[] = "/tmp/cgroup-devices-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempNodeDir() {
        ::unlink((path + "/disk").c_str());
        ::rmdir(path.c_str());
    }
    std::string path;
};

TEST_F(CgroupRoot, V1DevicesControllerDeniesTheHostDiskButNotNull) {
    const Hierarchy *h = _layout.owner("devices");
    if (!h || h->version != 1) GTEST_SKIP() << "no v1 devices controller here";
    // Without a block device this process can open (a guest on virtio-9p), only the
    // character devices are checked.
    auto disk = hostDisk();
    // v1 alone: the layout without the cgroup2 hierarchy (whose program would deny too).
    _cg = std::make_unique<Cgroups>(_layout.withoutUnified(), realFs(), Options{_parent});
    Settings s = parseResources(json::parse(kNullOnly));
    _cg->create(kPath, s);
    std::string list = file("devices", "devices.list");
    EXPECT_NE(list.find("c 1:3 rwm"), std::string::npos) << list;
    EXPECT_EQ(list.find("a *:* rwm"), std::string::npos) << list;
    TempNodeDir dir;
    int fd = -1;
    spawn([&](int out) { probeDevices(out, dir.path, disk); }, &fd);
    DeviceProbe p = readProbe(fd);
    EXPECT_EQ(p.null, 0);
    EXPECT_EQ(p.zero, EPERM);
    if (disk.first) {
        EXPECT_EQ(p.mknod, 0) << "mknod is allowed (m)";
        EXPECT_EQ(p.disk, EPERM) << "the host's disk " << disk.first << ":" << disk.second;
    }
    json report = _cg->report(kPath, s);
    EXPECT_EQ(report["fields"][0]["field"], "devices") << report.dump();
    EXPECT_NE(report["fields"][0]["applied"].dump().find("c 1:3 rwm"), std::string::npos)
        << report.dump();
}

TEST_F(CgroupRoot, Cgroup2DeviceProgramDeniesAndAllowsAsTheRulesSay) {
    const Hierarchy *u = _layout.unified();
    if (!u) GTEST_SKIP() << "no cgroup2 hierarchy here";
    // Without a block device this process can open (a guest on virtio-9p), only the
    // character devices are checked.
    auto disk = hostDisk();
    // A scratch cgroup2 directory below the test's parent (the guard removes it), no v1.
    std::string base = u->dirOf(joinPath(u->ownPath, _parent));
    std::string dir = base + "/bpf";
    ASSERT_EQ(realFs().mkdir(base), 0);
    ASSERT_EQ(realFs().mkdir(dir), 0);
    std::vector<DeviceRule> rules = *parseResources(json::parse(kNullOnly)).devices;
    std::string detail;
    ASSERT_EQ(setDeviceProgram(dir, rules, detail), 0) << detail;
    std::vector<std::uint32_t> ids;
    ASSERT_EQ(attachedDevicePrograms(dir, ids), 0);
    EXPECT_EQ(ids.size(), 1u);

    auto probe = [&]() {
        TempNodeDir nodes;
        int report[2], go[2];
        EXPECT_EQ(::pipe2(report, O_CLOEXEC), 0);
        EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
        pid_t pid = ::fork();
        if (pid == 0) {
            ::close(report[0]);
            ::close(go[1]);
            char c;
            if (::read(go[0], &c, 1) != 1) ::_exit(1);
            probeDevices(report[1], nodes.path, disk);
            ::_exit(0);
        }
        _children.push_back(pid);
        ::close(report[1]);
        ::close(go[0]);
        EXPECT_EQ(realFs().write(dir + "/cgroup.procs", std::to_string(pid)), 0);
        EXPECT_EQ(::write(go[1], "x", 1), 1);
        ::close(go[1]);
        DeviceProbe p = readProbe(report[0]);
        ::waitpid(pid, nullptr, 0);
        return p;
    };
    DeviceProbe p = probe();
    EXPECT_EQ(p.null, 0);
    EXPECT_EQ(p.zero, EPERM);
    if (disk.first) {
        EXPECT_EQ(p.mknod, 0) << "mknod is allowed (m)";
        EXPECT_EQ(p.disk, EPERM) << "the host's disk " << disk.first << ":" << disk.second;
    }

    // An update replaces the program: /dev/zero readable, the disk still not, and one
    // program attached, not two.
    rules.push_back(parseDeviceRules(json::parse(
        R"([{"allow": true, "type": "c", "major": 1, "minor": 5, "access": "r"}])"))[0]);
    ASSERT_EQ(setDeviceProgram(dir, rules, detail), 0) << detail;
    ASSERT_EQ(attachedDevicePrograms(dir, ids), 0);
    EXPECT_EQ(ids.size(), 1u);
    p = probe();
    EXPECT_EQ(p.null, 0);
    EXPECT_EQ(p.zero, 0);
    if (disk.first) {
        EXPECT_EQ(p.disk, EPERM);
    }

    // Allow everything, then deny the disk alone (what v1 cannot say exactly): the disk
    // stays closed, the rest opens.
    ASSERT_EQ(setDeviceProgram(dir,
                               parseDeviceRules(json::parse(R"([{"allow": true},
        {"allow": false, "type": "b", "major": )" + std::to_string(disk.first) +
                                                            R"(, "access": "rw"}])")),
                               detail),
              0)
        << detail;
    p = probe();
    EXPECT_EQ(p.zero, 0);
    if (disk.first) {
        EXPECT_EQ(p.mknod, 0);
        EXPECT_EQ(p.disk, EPERM);
    }
    EXPECT_EQ(setDeviceProgram(base + "/missing", rules, detail), -ENOENT);
    EXPECT_NE(detail.find("missing"), std::string::npos) << detail;
}

TEST_F(CgroupRoot, DeviceRulesLandOnEveryHierarchyThatHoldsThem) {
    // Without a block device this process can open (a guest on virtio-9p), only the
    // character devices are checked.
    auto disk = hostDisk();
    Settings s = parseResources(json::parse(kNullOnly));
    _cg->create(kPath, s);
    if (const Hierarchy *u = _layout.unified()) {
        std::vector<std::uint32_t> ids;
        ASSERT_EQ(
            attachedDevicePrograms(u->dirOf(joinPath(joinPath(u->ownPath, _parent), kPath)), ids),
            0);
        EXPECT_EQ(ids.size(), 1u);
    }
    TempNodeDir dir;
    int fd = -1;
    spawn([&](int out) { probeDevices(out, dir.path, disk); }, &fd);
    DeviceProbe p = readProbe(fd);
    EXPECT_EQ(p.null, 0);
    EXPECT_EQ(p.zero, EPERM);
    if (disk.first) {
        EXPECT_EQ(p.disk, EPERM);
    }
    // Everything allowed again by an update (v1: "a" to devices.allow; v2: a new program).
    _cg->update(kPath, parseResources(json::parse(R"({"devices": [{"allow": true}]})")));
    if (v1("devices")) {
        EXPECT_EQ(file("devices", "devices.list"), "a *:* rwm");
    }
    spawn([&](int out) { probeDevices(out, dir.path, disk); }, &fd);
    p = readProbe(fd);
    EXPECT_EQ(p.zero, 0);
    if (disk.first) {
        EXPECT_EQ(p.disk, 0);
    }
}

} // namespace
} // namespace mobileops::cgroup
