// The job file the qemu backend hands the guest init (guest/protocol.h), byte for byte.
#include "Job.h"
#include "TestUtil.h"
#include "protocol.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <sstream>

namespace mobileops::krun {
namespace {

VmConfig minimal() {
    VmConfig c;
    c.rootfs = "/srv/root";
    c.args = {"/bin/true"};
    return c;
}

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(Job, MinimalConfigSpellsOutTheDefaults) {
    EXPECT_EQ(encodeJob(minimal()), "arg 9\n/bin/true\n"
                                    "cwd 1\n/\n"
                                    "user 3\n0:0\n"
                                    "umask 4\n0022\n"
                                    "rootro 1\n0\n");
}

TEST(Job, EveryFieldInProtocolOrder) {
    VmConfig c = minimal();
    c.args = {"/bin/sh", "-c", "echo \"$1\"\nexit 3", "two words", ""};
    c.env = {"PATH=/bin", "EMPTY=", "MULTI=line1\nline2"};
    c.cwd = "/work dir";
    c.uid = 1000;
    c.gid = 100;
    c.groups = {10, 20};
    c.rlimits = {{"nofile", 1024, 4096}, {"core", -1, -1}};
    c.umask = 027;
    c.capabilities = VmCapabilities{0x3fffffffff, 0x2000, 0x2001, 0, 0x1};
    c.noNewPrivileges = true;
    c.seccomp = VmSeccomp{std::string("\x06\x00\x00\x00\x00\x00\xff\x7f", 8), 2};
    c.sysctls = {{"net.ipv4.ping_group_range", "0 2147483647"}, {"kernel.domainname", "x"}};
    c.hostname = "vm-1";
    c.rootReadOnly = true;
    c.mounts = {{"/host/a", "/data", false}, {"/host/b", "/etc/conf dir", true}};
    EXPECT_EQ(encodeJob(c), "arg 7\n/bin/sh\n"
                            "arg 2\n-c\n"
                            "arg 16\necho \"$1\"\nexit 3\n"
                            "arg 9\ntwo words\n"
                            "arg 0\n\n"
                            "env 9\nPATH=/bin\n"
                            "env 6\nEMPTY=\n"
                            "env 17\nMULTI=line1\nline2\n"
                            "cwd 9\n/work dir\n"
                            "user 8\n1000:100\n"
                            "groups 5\n10 20\n"
                            "rlimit 16\nnofile 1024 4096\n"
                            "rlimit 10\ncore -1 -1\n"
                            "umask 4\n0027\n"
                            "caps 24\n3fffffffff 2000 2001 0 1\n"
                            "nonewprivs 1\n1\n"
                            "seccomp 18\n2 060000000000ff7f\n"
                            "sysctl 38\nnet.ipv4.ping_group_range 0 2147483647\n"
                            "sysctl 19\nkernel.domainname x\n"
                            "hostname 4\nvm-1\n"
                            "rootro 1\n1\n"
                            "mount 16\nmo-vol0 /data rw\n"
                            "mount 24\nmo-vol1 /etc/conf dir ro\n");
}

TEST(Job, LengthsCountBytesNotCharacters) {
    VmConfig c = minimal();
    c.args = {"/bin/echo", "h\xc3\xa9"}; // "hé": three bytes
    EXPECT_NE(encodeJob(c).find("arg 3\nh\xc3\xa9\n"), std::string::npos);
}

TEST(Job, VolumeTagsFollowTheProtocolPrefix) {
    EXPECT_EQ(volumeTag(0), MO_TAG_VOLUME_PREFIX "0");
    EXPECT_EQ(volumeTag(12), "mo-vol12");
}

struct BadCase {
    const char *name;
    std::function<void(VmConfig &)> spoil;
    const char *message; // a part of the error message that names the field and value
};

TEST(Job, BadFieldsAreRefusedByName) {
    const BadCase cases[] = {
        {"no args", [](VmConfig &c) { c.args.clear(); }, "no program to run"},
        {"empty program", [](VmConfig &c) { c.args = {""}; }, "argument 0) is empty"},
        {"nul in arg", [](VmConfig &c) { c.args.push_back(std::string("a\0b", 3)); },
         "argument 1 contains a NUL byte"},
        {"env without =", [](VmConfig &c) { c.env = {"JUSTNAME"}; },
         "environment entry `JUSTNAME` is not NAME=value"},
        {"env without name", [](VmConfig &c) { c.env = {"=x"}; }, "`=x` is not NAME=value"},
        {"relative cwd", [](VmConfig &c) { c.cwd = "work"; },
         "working directory `work` is not absolute"},
        {"unknown rlimit",
         [](VmConfig &c) {
             c.rlimits = {{"files", 1, 1}};
         },
         "unknown rlimit `files`"},
        {"soft above hard",
         [](VmConfig &c) {
             c.rlimits = {{"nofile", 10, 5}};
         },
         "rlimit `nofile`: soft limit 10 above hard limit 5"},
        {"unlimited soft",
         [](VmConfig &c) {
             c.rlimits = {{"nproc", -1, 5}};
         },
         "soft limit unlimited above hard limit 5"},
        {"below -1",
         [](VmConfig &c) {
             c.rlimits = {{"nproc", -2, -1}};
         },
         "below -1"},
        {"relative target",
         [](VmConfig &c) {
             c.mounts = {{"/h", "data", false}};
         },
         "volume target `data` is not absolute"},
        {"target root",
         [](VmConfig &c) {
             c.mounts = {{"/h", "//", false}};
         },
         "volume `/h` cannot be mounted on `/`"},
        {"hostname newline", [](VmConfig &c) { c.hostname = "a\nb"; }, "hostname `a\nb`"},
        {"umask", [](VmConfig &c) { c.umask = 01000; }, "umask 512 above 0777"},
        {"empty filter", [](VmConfig &c) { c.seccomp = VmSeccomp{}; }, "seccomp filter of 0 bytes"},
        {"torn filter",
         [](VmConfig &c) {
             c.seccomp = VmSeccomp{std::string(12, 'x'), 0};
         },
         "seccomp filter of 12 bytes"},
        {"huge filter",
         [](VmConfig &c) {
             c.seccomp = VmSeccomp{std::string(8 * 4097, 'x'), 0};
         },
         "expected 1 to 4096 instructions"},
        {"sysctl escape",
         [](VmConfig &c) {
             c.sysctls = {{"../../etc/passwd", "x"}};
         },
         "sysctl `../../etc/passwd` is not a sysctl name"},
        {"sysctl space",
         [](VmConfig &c) {
             c.sysctls = {{"kernel.domain name", "x"}};
         },
         "is not a sysctl name"},
        {"sysctl absolute",
         [](VmConfig &c) {
             c.sysctls = {{"/kernel/x", "x"}};
         },
         "is not a sysctl name"},
        {"sysctl nul",
         [](VmConfig &c) {
             c.sysctls = {{"kernel.x", std::string("a\0b", 3)}};
         },
         "sysctl `kernel.x` contains a NUL byte"},
    };
    for (const auto &bad : cases) {
        VmConfig c = minimal();
        bad.spoil(c);
        try {
            encodeJob(c);
            ADD_FAILURE() << bad.name << ": accepted";
        } catch (const sdk::Error &e) {
            EXPECT_EQ(e.code(), MO_E_INVALID) << bad.name;
            EXPECT_NE(std::string(e.what()).find(bad.message), std::string::npos)
                << bad.name << ": " << e.what();
            EXPECT_EQ(std::string(e.what()).rfind("job: ", 0), 0u) << e.what();
        }
    }
}

TEST(Job, WriteJobReplacesTheFile) {
    test::TempDir dir;
    dir.file(MO_JOB_FILE, "an older and much longer job that must not survive\n");
    VmConfig c = minimal();
    writeJob(c, dir.path());
    EXPECT_EQ(slurp(dir.path() + "/" MO_JOB_FILE), encodeJob(c));
}

TEST(Job, WriteJobNamesTheMissingDirectory) {
    test::TempDir dir;
    try {
        writeJob(minimal(), dir.path() + "/missing");
        FAIL() << "wrote into a missing directory";
    } catch (const sdk::Error &e) {
        EXPECT_NE(std::string(e.what()).find("/missing/job`: No such file or directory"),
                  std::string::npos)
            << e.what();
    }
}

TEST(Job, ExitCodes) {
    EXPECT_EQ(parseExitCode("0\n"), 0);
    EXPECT_EQ(parseExitCode("3"), 3);
    EXPECT_EQ(parseExitCode("127\r\nrest of the console"), 127);
    EXPECT_EQ(parseExitCode("255\n"), 255);
    EXPECT_EQ(parseExitCode("256\n"), std::nullopt);
    EXPECT_EQ(parseExitCode("1000\n"), std::nullopt);
    EXPECT_EQ(parseExitCode(""), std::nullopt);
    EXPECT_EQ(parseExitCode("\n"), std::nullopt);
    EXPECT_EQ(parseExitCode("-1\n"), std::nullopt);
    EXPECT_EQ(parseExitCode("4x\n"), std::nullopt);
}

TEST(Job, ExitReportsTellASignalFromAnExit) {
    EXPECT_EQ(parseExitReport("143\n"), (ExitReport{143, 0}));
    EXPECT_EQ(parseExitReport("143 signal 15\n"), (ExitReport{143, 15}));
    EXPECT_EQ(parseExitReport("137 signal 9\r\nmore"), (ExitReport{137, 9}));
    EXPECT_EQ(parseExitCode("143 signal 15\n"), 143);
    // The code must be 128+N, N a signal number.
    EXPECT_EQ(parseExitReport("3 signal 15\n"), std::nullopt);
    EXPECT_EQ(parseExitReport("128 signal 0\n"), std::nullopt);
    EXPECT_EQ(parseExitReport("143 signal\n"), std::nullopt);
    EXPECT_EQ(parseExitReport("143 signal 15x\n"), std::nullopt);
    EXPECT_EQ(parseExitReport("143 sig 15\n"), std::nullopt);
}

} // namespace
} // namespace mobileops::krun
