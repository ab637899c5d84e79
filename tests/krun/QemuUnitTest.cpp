// The qemu backend without booting a guest: its command line, the host TSC frequency it
// hands TCG guests, and the cached verdict of the acceleration probe.
#include "Qemu.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mobileops::krun {
namespace {

#define REQUIRE_QEMU()                                                                             \
    do {                                                                                           \
        std::string why;                                                                           \
        if (!findQemu(&why)) GTEST_SKIP() << why;                                                  \
    } while (0)

GuestAssets assets() {
    GuestAssets a;
    a.kernelVersion = "6.1.0-56-amd64";
    a.kernel = "/cache/vmlinux";
    a.initramfs = "/cache/initramfs.cpio";
    a.dir = "/cache";
    return a;
}

VmConfig config() {
    VmConfig c;
    c.rootfs = "/srv/root";
    c.args = {"/bin/true"};
    c.workDir = "/run/vm/1";
    return c;
}

// The value following `option` (its first occurrence).
std::string after(const std::vector<std::string> &cmd, const std::string &option) {
    auto it = std::find(cmd.begin(), cmd.end(), option);
    return it == cmd.end() || it + 1 == cmd.end() ? std::string("<missing>") : *(it + 1);
}

// Every value of a repeated `option`.
std::vector<std::string> all(const std::vector<std::string> &cmd, const std::string &option) {
    std::vector<std::string> values;
    for (size_t i = 0; i + 1 < cmd.size(); ++i)
        if (cmd[i] == option) values.push_back(cmd[i + 1]);
    return values;
}

bool contains(const std::vector<std::string> &values, const std::string &value) {
    return std::find(values.begin(), values.end(), value) != values.end();
}

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(QemuCommand, TcgGuest) {
    REQUIRE_QEMU();
    VmConfig c = config();
    c.vcpus = 3;
    c.memory = 300ull << 20;
    auto cmd = qemuCommand(c, assets(), {"tcg", "test"});
    EXPECT_EQ(cmd[0], *findQemu());
    EXPECT_EQ(after(cmd, "-machine").rfind("microvm,", 0), 0u) << after(cmd, "-machine");
    EXPECT_EQ(after(cmd, "-accel"), "tcg,thread=multi");
    EXPECT_EQ(after(cmd, "-cpu"), "max");
    EXPECT_EQ(after(cmd, "-smp"), "3");
    EXPECT_EQ(after(cmd, "-m"), "300M");
    EXPECT_EQ(after(cmd, "-kernel"), "/cache/vmlinux");
    EXPECT_EQ(after(cmd, "-initrd"), "/cache/initramfs.cpio");
    for (const char *flag : {"-nodefaults", "-no-user-config", "-no-reboot"})
        EXPECT_TRUE(contains(cmd, flag)) << flag;
    EXPECT_EQ(after(cmd, "-display"), "none");
    EXPECT_EQ(after(cmd, "-sandbox"),
              "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    std::string append = after(cmd, "-append");
    for (const char *word : {"console=ttyS0", "reboot=t", "panic=-1", "quiet"})
        EXPECT_NE(append.find(word), std::string::npos) << append;
    ASSERT_GT(hostTscKhz(), 0u) << "no TSC frequency on an x86 host";
    EXPECT_NE(append.find(" tsc_early_khz=" + std::to_string(hostTscKhz()) + " tsc=reliable"),
              std::string::npos)
        << append;
}

TEST(QemuCommand, KvmGuestUsesTheHostCpuAndNoTscHint) {
    REQUIRE_QEMU();
    auto cmd = qemuCommand(config(), assets(), {"kvm", "test"});
    EXPECT_EQ(after(cmd, "-accel"), "kvm");
    EXPECT_EQ(after(cmd, "-cpu"), "host");
    EXPECT_EQ(after(cmd, "-smp"), "2");
    EXPECT_EQ(after(cmd, "-m"), "512M");
    EXPECT_EQ(after(cmd, "-append").find("tsc"), std::string::npos);
}

TEST(QemuCommand, PortsAndControlComeFromInheritedDescriptors) {
    REQUIRE_QEMU();
    auto cmd = qemuCommand(config(), assets(), {"tcg", "test"});
    auto chardevs = all(cmd, "-chardev");
    EXPECT_TRUE(contains(chardevs, "file,id=mo-console,path=/run/vm/1/console.log"));
    EXPECT_TRUE(contains(chardevs, "file,id=mo-stdout,append=on,path=/dev/fdset/3"));
    EXPECT_TRUE(contains(chardevs, "file,id=mo-stderr,append=on,path=/dev/fdset/4"));
    EXPECT_TRUE(contains(chardevs, "socket,id=mo-control,fd=5"));
    auto fds = all(cmd, "-add-fd");
    EXPECT_TRUE(contains(fds, "fd=3,set=3"));
    EXPECT_TRUE(contains(fds, "fd=4,set=4"));
    EXPECT_EQ(after(cmd, "-serial"), "chardev:mo-console");
    // Flow-controlled ports (not virtconsoles, which drop what the host cannot take at
    // once), named for the guest to find; port 0 is a virtconsole's.
    auto devices = all(cmd, "-device");
    EXPECT_TRUE(contains(devices, "virtio-serial-device,max_ports=4"));
    EXPECT_TRUE(contains(devices, "virtserialport,chardev=mo-stdout,nr=1,name=mobileops.stdout"));
    EXPECT_TRUE(contains(devices, "virtserialport,chardev=mo-stderr,nr=2,name=mobileops.stderr"));
    EXPECT_TRUE(contains(devices, "virtserialport,chardev=mo-control,nr=3,name=mobileops.control"));
    for (const auto &d : devices) EXPECT_EQ(d.find("virtconsole"), std::string::npos) << d;
}

TEST(QemuCommand, SharesForJobRootAndVolumes) {
    REQUIRE_QEMU();
    VmConfig c = config();
    c.rootReadOnly = true;
    c.mounts = {{"/data/rw", "/rw", false}, {"/data/a,b", "/ro", true}};
    auto cmd = qemuCommand(c, assets(), {"tcg", "test"});
    const std::string common = ",security_model=passthrough,multidevs=remap";
    EXPECT_EQ(all(cmd, "-fsdev"), (std::vector<std::string>{
                                      "local,id=mo-job,path=/run/vm/1/job" + common,
                                      "local,id=mo-root,path=/srv/root" + common + ",readonly=on",
                                      "local,id=mo-vol0,path=/data/rw" + common,
                                      // qemu's option syntax doubles a comma inside a value
                                      "local,id=mo-vol1,path=/data/a,,b" + common + ",readonly=on",
                                  }));
    auto devices = all(cmd, "-device");
    for (const char *tag : {"mo-job", "mo-root", "mo-vol0", "mo-vol1"})
        EXPECT_TRUE(
            contains(devices, std::string("virtio-9p-device,fsdev=") + tag + ",mount_tag=" + tag))
            << tag;
}

TEST(QemuCommand, RefusesWhatTheMachineCannotRun) {
    REQUIRE_QEMU();
    struct Bad {
        VmConfig config;
        Accel accel;
        const char *message;
    };
    std::vector<Bad> cases;
    cases.push_back({config(), {"hvf", ""}, "unknown accelerator `hvf`"});
    cases.push_back({config(), {"tcg", ""}, "vcpus must be at least 1"});
    cases.back().config.vcpus = 0;
    cases.push_back({config(), {"tcg", ""}, "memory `32Mi` is below the 64Mi"});
    cases.back().config.memory = 32ull << 20;
    cases.push_back({config(), {"tcg", ""}, "timeout must be positive"});
    cases.back().config.timeout = std::chrono::seconds(0);
    cases.push_back({config(), {"tcg", ""}, "6 volumes, a qemu micro-VM takes at most 5"});
    for (int i = 0; i < 6; ++i)
        cases.back().config.mounts.push_back({"/v", "/v" + std::to_string(i), false});
    for (auto &bad : cases) {
        try {
            qemuCommand(bad.config, assets(), bad.accel);
            ADD_FAILURE() << bad.message << ": accepted";
        } catch (const sdk::Error &e) {
            EXPECT_EQ(e.code(), MO_E_INVALID);
            EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos) << e.what();
        }
    }
}

TEST(QemuCommand, LaunchNamesAMissingRoot) {
    REQUIRE_QEMU();
    test::TempDir work;
    VmConfig c = config();
    c.rootfs = work.path() + "/no-root";
    c.workDir = work.path();
    try {
        QemuVm::launch(c, assets(), {"tcg", "test"});
        FAIL() << "launched without a root";
    } catch (const sdk::Error &e) {
        EXPECT_NE(std::string(e.what()).find("root filesystem `" + c.rootfs +
                                             "`: No such file or directory"),
                  std::string::npos)
            << e.what();
    }
}

TEST(QemuCommand, LaunchRefusesAFileAsVolume) {
    REQUIRE_QEMU();
    test::TempDir work;
    VmConfig c = config();
    c.rootfs = work.path();
    c.workDir = work.path();
    c.mounts = {{work.file("plain", "x"), "/plain", false}};
    try {
        QemuVm::launch(c, assets(), {"tcg", "test"});
        FAIL() << "launched with a file as a volume";
    } catch (const sdk::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_NE(std::string(e.what()).find("is not a directory"), std::string::npos) << e.what();
    }
}

TEST(HostTsc, IsAPlausibleFrequencyAndStable) {
    unsigned long khz = hostTscKhz();
    ASSERT_GT(khz, 0u) << "no TSC frequency on an x86 host";
    EXPECT_GT(khz, 100'000u);    // 100 MHz
    EXPECT_LT(khz, 10'000'000u); // 10 GHz
    EXPECT_EQ(hostTscKhz(), khz);
}

// Fake assets make the probe guest fail at once (qemu cannot load the kernel), which is
// enough to see the verdict, its cache, and the cache's key.
class ProbeCache : public ::testing::Test {
protected:
    void SetUp() override {
        std::string why;
        if (!findQemu(&why)) GTEST_SKIP() << why;
        int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) GTEST_SKIP() << "needs an openable /dev/kvm: without one nothing is probed";
        ::close(fd);
        fake.kernel = dir.file("vmlinux", "not a kernel");
        fake.initramfs = dir.file("initramfs.cpio", "not a cpio");
        fake.dir = dir.path();
        cacheFile = dir.path() + "/cache/accel.json";
    }
    test::TempDir dir;
    GuestAssets fake;
    std::string cacheFile;
};

TEST_F(ProbeCache, AFailedProbeFallsBackToTcgAndIsCached) {
    Accel first = probeAccel(fake, cacheFile);
    EXPECT_EQ(first.name, "tcg");
    EXPECT_NE(first.why.find("probe guest failed after"), std::string::npos) << first.why;
    EXPECT_NE(first.why.find("tsc_early_khz=" + std::to_string(hostTscKhz())), std::string::npos)
        << first.why;

    auto doc = nlohmann::json::parse(slurp(cacheFile));
    EXPECT_EQ(doc["accel"], "tcg");
    EXPECT_EQ(doc["why"], first.why);
    // The probe's own directory is gone: the cache directory holds the verdict only.
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path() + "/cache"),
                            std::filesystem::directory_iterator()),
              1);

    // A second call answers from the cache: an edited verdict comes back as written.
    doc["why"] = "from the cache";
    std::ofstream(cacheFile) << doc.dump();
    EXPECT_EQ(probeAccel(fake, cacheFile).why, "from the cache");

    // A new kernel is a new question.
    struct timespec times[2] = {{0, UTIME_OMIT}, {1'000'000, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, fake.kernel.c_str(), times, 0), 0);
    Accel again = probeAccel(fake, cacheFile);
    EXPECT_EQ(again.name, "tcg");
    EXPECT_NE(again.why, "from the cache");
}

TEST_F(ProbeCache, ACorruptCacheIsProbedAgain) {
    std::filesystem::create_directories(dir.path() + "/cache");
    std::ofstream(cacheFile) << "{ not json";
    Accel verdict = probeAccel(fake, cacheFile);
    EXPECT_EQ(verdict.name, "tcg");
    EXPECT_EQ(nlohmann::json::parse(slurp(cacheFile))["accel"], "tcg");
}

} // namespace
} // namespace mobileops::krun
