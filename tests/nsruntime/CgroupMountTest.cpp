// The container's cgroups at /sys/fs/cgroup (spec `cgroupMount`), real containers through
// the engine (root): the test makes the cgroups the cgroup service would (memory and pids
// with limits, and the cgroup2 hierarchy) and moves the container there before it makes its
// cgroup namespace; the container must see exactly those, as the roots, with their limits.
#include "Launcher.h"
#include "Mounts.h"
#include "TestSupport.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using nlohmann::json;

namespace {

using Result = Captured;

// A host hierarchy below /sys/fs/cgroup as the container names it, and the test's cgroup
// in it.
struct Made {
    std::string name; // "memory", "pids", "unified"; "" on a cgroup2-only host
    std::string dir;  // on the host
    int version = 1;
};

int cgroupMountCount() {
    std::istringstream in(slurp("/proc/self/mountinfo"));
    int n = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find(" - cgroup") != std::string::npos) ++n;
    return n;
}

ino_t inodeOf(const std::string &path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

class CgroupFsTest : public ::testing::Test {
protected:
    void SetUp() override {
        REQUIRE_ROOT_AND_ROOTFS();
        _mountsBefore = cgroupMountCount();
        const std::string tag = "mobileops-cgfs-test-" + std::to_string(::getpid());
        // The hierarchies to make cgroups on: v1 memory and pids, and cgroup2.
        for (const auto &h : cgroupHierarchies(
                 {slurp("/proc/self/mountinfo"), slurp("/proc/self/cgroup"), "0::/\n"})) {
            if (h.version == 1 && h.options != "memory" && h.options != "pids") continue;
            std::string top = h.name.empty() ? "/sys/fs/cgroup" : "/sys/fs/cgroup/" + h.name;
            Made m{h.name, top + "/" + tag, h.version};
            if (::mkdir(m.dir.c_str(), 0755) < 0) continue;
            _made.push_back(m);
            // A sibling the container must not see (another container's).
            if (h.options == "memory" || h.name.empty()) {
                _other = top + "/" + tag + "-other";
                ::mkdir(_other.c_str(), 0755);
            }
        }
        if (dirOf("memory").empty() || dirOf("pids").empty())
            GTEST_SKIP() << "this host has no v1 memory and pids hierarchies at /sys/fs/cgroup "
                            "(the cgroup2-only layout is exercised by the v2 guest tests)";
        std::ofstream(dirOf("memory") + "/memory.limit_in_bytes") << "67108864\n";
        std::ofstream(dirOf("pids") + "/pids.max") << "50\n";
    }
    void TearDown() override {
        auto remove = [](const std::string &dir) {
            // An exited task's cgroup can stay busy for a moment (EBUSY).
            for (int i = 0; i < 500 && ::rmdir(dir.c_str()) < 0 && errno == EBUSY; ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
        };
        for (const auto &m : _made) {
            remove(m.dir);
            EXPECT_FALSE(std::filesystem::exists(m.dir)) << m.dir << " was left";
        }
        if (!_other.empty()) remove(_other);
        if (rootfsPath().empty() || ::geteuid() != 0) return;
        EXPECT_EQ(hostMountsUnder(rootfsPath()), 0) << "a mount leaked into the host namespace";
        EXPECT_EQ(cgroupMountCount(), _mountsBefore) << "a cgroup mount leaked onto the host";
        EXPECT_TRUE(noChildren()) << "a container process was left behind";
    }

    std::string dirOf(const std::string &name) const {
        for (const auto &m : _made)
            if (m.name == name) return m.dir;
        return {};
    }

    // Moves the container into the test's cgroups, as the cgroup service does.
    LaunchOptions placed() const {
        LaunchOptions o;
        std::vector<std::string> procs;
        for (const auto &m : _made) procs.push_back(m.dir + "/cgroup.procs");
        o.afterClone = [procs](pid_t pid) {
            for (const auto &p : procs) std::ofstream(p) << pid << "\n";
        };
        return o;
    }

    Result sh(const std::string &script, json extra = json::object(),
              const LaunchOptions &options = {}) {
        json doc = {{"rootfs", rootfsPath()},
                    {"hostname", "cgtest"},
                    {"process", {{"args", {"/bin/sh", "-c", script}}}}};
        if (extra.is_object()) doc.merge_patch(extra);
        ContainerSpec spec = parseSpec(doc);
        prepareSpec(spec);
        return launchCaptured(spec, options);
    }

    // What the container lists at /sys/fs/cgroup: the hierarchies the test placed it in.
    std::string expectedListing() const {
        std::set<std::string> names;
        for (const auto &m : _made) names.insert(m.name);
        std::string out;
        for (const auto &n : names) out += n + "\n";
        return out;
    }

    std::vector<Made> _made;
    std::string _other;
    int _mountsBefore = 0;
};

const char *kMountsProbe = "awk '$5 ~ /^\\/sys\\/fs\\/cgroup/ {print $5, $9, substr($6, 1, 2)}' "
                           "/proc/self/mountinfo";

} // namespace

TEST_F(CgroupFsTest, LimitsAreVisibleInside) {
    Result r = sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
                  {}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "67108864\n50\n");
}

TEST_F(CgroupFsTest, OnlyTheContainersOwnCgroupsAreTheRoots) {
    std::string probe = "ls /sys/fs/cgroup; ls -d /sys/fs/cgroup/*/*/ 2>/dev/null; "
                        "find /sys/fs/cgroup -name '*-other' 2>/dev/null; ";
    for (const auto &m : _made) probe += "stat -L -c %i /sys/fs/cgroup/" + m.name + "; ";
    probe += "grep -E ':(memory|pids|):' /proc/self/cgroup | cut -d: -f3";
    Result r = sh(probe, {}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    // The hierarchies the container has a cgroup of its own in, nothing else (not cpu,
    // devices or name=systemd, where it is still in its launcher's cgroup); no directory
    // below them (no sibling's, no host's); each the test's cgroup itself; and the cgroup
    // namespace's root is that cgroup.
    std::string expected = expectedListing();
    for (const auto &m : _made) expected += std::to_string(inodeOf(m.dir)) + "\n";
    for (size_t i = 0; i < _made.size(); ++i) expected += "/\n";
    EXPECT_EQ(r.out, expected);
}

TEST_F(CgroupFsTest, ReadOnlyByDefaultRefusesWrites) {
    Result r = sh("echo 10 > /sys/fs/cgroup/pids/pids.max || echo refused; "
                  "mkdir /sys/fs/cgroup/memory/child || echo refused; "
                  "touch /sys/fs/cgroup/file || echo refused; "
                  "ln -s x /sys/fs/cgroup/link || echo refused; " +
                      std::string(kMountsProbe),
                  {}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    std::string mounts = "/sys/fs/cgroup tmpfs ro\n";
    for (const auto &m : _made)
        mounts += "/sys/fs/cgroup/" + m.name + (m.version == 2 ? " cgroup2 ro\n" : " cgroup ro\n");
    EXPECT_EQ(r.out, "refused\nrefused\nrefused\nrefused\n" + mounts);
    EXPECT_EQ(slurp(dirOf("pids") + "/pids.max"), "50\n");
    EXPECT_FALSE(std::filesystem::exists(dirOf("memory") + "/child"));
}

TEST_F(CgroupFsTest, RwOptionLetsTheContainerWriteItsOwnCgroups) {
    Result r = sh("echo 40 > /sys/fs/cgroup/pids/pids.max && mkdir /sys/fs/cgroup/memory/child "
                  "&& rmdir /sys/fs/cgroup/memory/child && echo written; " +
                      std::string(kMountsProbe) + " | head -2",
                  {{"cgroupMount", "rw"}}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "written\n/sys/fs/cgroup tmpfs rw\n/sys/fs/cgroup/" + _made[0].name +
                         (_made[0].version == 2 ? " cgroup2 rw\n" : " cgroup rw\n"));
    EXPECT_EQ(slurp(dirOf("pids") + "/pids.max"), "40\n");
}

TEST_F(CgroupFsTest, WithoutItsOwnCgroupNamespaceTheCgroupDirectoriesAreBound) {
    Result r = sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
                  "ls /sys/fs/cgroup; stat -L -c %i /sys/fs/cgroup/memory; "
                  "echo 1 > /sys/fs/cgroup/pids/pids.max || echo refused",
                  {{"namespaces", {{"cgroup", false}}}}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "67108864\n50\n" + expectedListing() +
                         std::to_string(inodeOf(dirOf("memory"))) + "\nrefused\n");
}

TEST_F(CgroupFsTest, NoCgroupOfItsOwnGivesAnEmptyReadOnlyTmpfs) {
    // Not moved: the container is in its launcher's cgroups, which it is not shown.
    Result r = sh("ls /sys/fs/cgroup; touch /sys/fs/cgroup/x || echo refused; " +
                  std::string(kMountsProbe));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "refused\n/sys/fs/cgroup tmpfs ro\n");
}

TEST_F(CgroupFsTest, NoneMountsNothing) {
    Result r =
        sh(std::string(kMountsProbe) + "; ls /sys/fs/cgroup", {{"cgroupMount", "none"}}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, ""); // sysfs's own empty directory
}

TEST_F(CgroupFsTest, SpecMountsBelowItGoOnTopAndTheTmpfsStillEndsReadOnly) {
    Result r =
        sh("touch /sys/fs/cgroup/extra/file && echo extra-writable; "
           "touch /sys/fs/cgroup/file || echo refused; "
           "cat /sys/fs/cgroup/pids/pids.max",
           {{"mounts", {{{"destination", "/sys/fs/cgroup/extra"}, {"type", "tmpfs"}}}}}, placed());
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "extra-writable\nrefused\n50\n");
}

TEST_F(CgroupFsTest, ReadOnlyAndVolatileRoots) {
    for (const json &extra : {json{{"readonly", true}}, json{{"volatile", true}}}) {
        Result r = sh("cat /sys/fs/cgroup/pids/pids.max", extra, placed());
        EXPECT_EQ(r.status, 0) << extra.dump() << ": " << r.err;
        EXPECT_EQ(r.out, "50\n") << extra.dump();
    }
    EXPECT_FALSE(std::filesystem::exists(rootfsPath() + "/sys/fs/cgroup/memory"))
        << "a mount point was made in the rootfs";
}

TEST_F(CgroupFsTest, UserNamespaceAndHostNetwork) {
    // A user namespace owns the cgroup namespace it makes, so it may mount its hierarchies;
    // with the host's network, /sys is the host's bound read-only, and the tmpfs hides the
    // host's cgroups that came with it.
    const json userns = {
        {"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}};
    for (const json &extra :
         {json{{"userns", userns}}, json{{"userns", userns}, {"network", {{"mode", "host"}}}}}) {
        Result r = sh("cat /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup; "
                      "echo 1 > /sys/fs/cgroup/pids/pids.max || echo refused",
                      extra, placed());
        EXPECT_EQ(r.status, 0) << extra.dump() << ": " << r.err;
        EXPECT_EQ(r.out, "50\n" + expectedListing() + "refused\n") << extra.dump();
    }
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
