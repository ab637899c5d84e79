// Device rules end to end (real root): containers run through the dispatcher and through
// mobileops-runc get the runtime's default device list from the cgroup service, so a
// container with CAP_MKNOD can make a node of the host's disk but not open it, while the
// standard nodes, linux.devices and the extra rules of linux.resources.devices work and a
// privileged container opens anything. Each test has its own root and state directory
// under a temporary directory; the tear-down deletes every container left there and fails
// on a mount left below it.
#include "CliFixture.h"
#include "HostDisk.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mobileops::test {
namespace {

using json = nlohmann::json;

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// The host disk as mknod wants it ("254 0"), "" when there is none.
std::string hostDisk() {
    auto [major, minor] = mobileops::cgroup::testing::hostDisk();
    return major ? std::to_string(major) + " " + std::to_string(minor) : std::string();
}

// The probe every test runs inside: one `name=result` line each.
std::string probeScript(const std::string &disk) {
    return "mknod /dev/disk0 b " + disk +
           " && echo mknod=ok\n"
           "if dd if=/dev/disk0 of=/dev/null bs=512 count=1 2>/dev/null; then echo disk=ok; "
           "else echo disk=denied; fi\n"
           "echo zero=$(head -c 4 /dev/zero | wc -c)\n"
           "echo urandom=$(head -c 4 /dev/urandom | wc -c)\n"
           "echo x > /dev/null && echo null=ok\n"
           "exec 3<>/dev/ptmx && echo ptmx=ok\n"
           // a new pty's slave is locked (EIO) until unlockpt; the cgroup would say EPERM
           "if (exec 4<>/dev/pts/0) 2>&1 | grep -q 'not permitted'; then echo pts=denied; "
           "else echo pts=ok; fi\n";
}

class DevicesCli : public CliTest {
protected:
    void SetUp() override {
        if (::geteuid() == 0) {
            _disk = hostDisk();
            if (_disk.empty()) GTEST_SKIP() << "no block device this process can open";
        }
        CliTest::SetUp();
    }

    void TearDown() override {
        if (!_rootfs.empty()) {
            Result r = oci({"list", "--format", "json"});
            if (r.status == 0 && !r.out.empty())
                for (const auto &c : json::parse(r.out)) oci({"delete", "--force", c["id"]});
        }
        CliTest::TearDown();
    }

    Result oci(const std::vector<std::string> &args) {
        std::vector<std::string> argv{MOBILEOPS_BINARY_DIR "/bin/mobileops-runc",
                                      "--root",
                                      _tmp.path() + "/state",
                                      "--log",
                                      _tmp.path() + "/log.json",
                                      "--log-format",
                                      "json"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, {{"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    }

    // Run the probe in a container with `flags`; its output.
    std::string probe(const std::vector<std::string> &flags) {
        std::vector<std::string> args{"container", "run", "--rm"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.insert(args.end(), {_rootfs, "/bin/sh", "-c", probeScript(_disk)});
        Result r = mo(args);
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out;
    }

    // A bundle (mobileops-runc spec) around the rootfs, running `script`, with CAP_MKNOD.
    json bundle(const std::string &script) {
        std::string dir = _tmp.path() + "/bundle";
        Result r = oci({"spec", "--bundle", dir});
        if (r.status != 0) {
            ::mkdir(dir.c_str(), 0755);
            r = oci({"spec", "--bundle", dir});
        }
        EXPECT_EQ(r.status, 0) << r.err;
        json c = json::parse(slurp(dir + "/config.json"));
        c["root"] = {{"path", _rootfs}, {"readonly", false}};
        c["process"]["terminal"] = false;
        c["process"]["args"] = {"/bin/sh", "-c", script};
        for (const char *set : {"bounding", "effective", "permitted"})
            c["process"]["capabilities"][set].push_back("CAP_MKNOD");
        return c;
    }

    Result runBundle(const json &config, const std::string &id) {
        std::string dir = _tmp.path() + "/bundle";
        std::ofstream(dir + "/config.json") << config.dump(2);
        return oci({"run", "--bundle", dir, id});
    }

    std::string _disk;
};

TEST_F(DevicesCli, MknodOfTheHostDiskWorksButOpeningItIsDenied) {
    std::string out = probe({"--cap-add", "MKNOD"});
    EXPECT_EQ(out, "mknod=ok\ndisk=denied\nzero=4\nurandom=4\nnull=ok\nptmx=ok\npts=ok\n");
}

TEST_F(DevicesCli, WithoutMknodTheNodeCannotEvenBeMade) {
    std::string out = probe({});
    EXPECT_EQ(out.find("mknod=ok"), std::string::npos) << out;
    EXPECT_NE(out.find("disk=denied"), std::string::npos) << out;
    EXPECT_NE(out.find("null=ok"), std::string::npos) << out;
}

TEST_F(DevicesCli, PrivilegedOpensAnything) {
    std::string out = probe({"--privileged"});
    EXPECT_EQ(out, "mknod=ok\ndisk=ok\nzero=4\nurandom=4\nnull=ok\nptmx=ok\npts=ok\n");
}

TEST_F(DevicesCli, OciDevicesAndExtraRulesAreUsableTheRestIsNot) {
    // linux.devices: a node passed through (/dev/loop-control, 10:237) is usable;
    // linux.resources.devices: one extra rule (/dev/fuse, 10:229) made inside is usable too;
    // /dev/kvm (10:232), in neither, is not, and neither is the host's disk.
    std::string script = probeScript(_disk) +
                         "exec 5<>/dev/loop-control && echo loop=ok\n"
                         "mknod /dev/fuse c 10 229 && exec 6<>/dev/fuse && echo fuse=ok\n"
                         "mknod /dev/kvm c 10 232 && (exec 7<>/dev/kvm) 2>&1 | "
                         "grep -q 'not permitted' && echo kvm=denied\n";
    json c = bundle(script);
    c["linux"]["devices"] = {
        {{"path", "/dev/loop-control"}, {"type", "c"}, {"major", 10}, {"minor", 237}}};
    c["linux"]["resources"]["devices"] = {
        {{"allow", false}, {"access", "rwm"}},
        {{"allow", true}, {"type", "c"}, {"major", 10}, {"minor", 229}, {"access", "rw"}}};
    Result r = runBundle(c, "dv1");
    EXPECT_EQ(r.status, 0) << r.err << slurp(_tmp.path() + "/log.json");
    EXPECT_EQ(r.out, "mknod=ok\ndisk=denied\nzero=4\nurandom=4\nnull=ok\nptmx=ok\npts=ok\n"
                     "loop=ok\nfuse=ok\nkvm=denied\n");
    // An engine's "allow everything" (podman --privileged) is applied as such.
    c["linux"]["resources"]["devices"] = {{{"allow", true}, {"access", "rwm"}}};
    c["process"]["args"] = {"/bin/sh", "-c", probeScript(_disk)};
    r = runBundle(c, "dv2");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("disk=ok"), std::string::npos) << r.out;
    // A rule the converter refuses names its path and leaves nothing behind.
    c["linux"]["resources"]["devices"] = {{{"allow", true}, {"type", "x"}}};
    r = runBundle(c, "dv3");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(slurp(_tmp.path() + "/log.json").find("linux.resources.devices[0].type"),
              std::string::npos);
    EXPECT_EQ(oci({"state", "dv3"}).status, 1);
}

} // namespace
} // namespace mobileops::test
