// Child-side credential and exec logic over the recording fake.
#include "Process.h"
#include "Launcher.h"
#include "RecordingSyscalls.h"

#include <gtest/gtest.h>

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>

using namespace mobileops::nsruntime;
using mobileops::nsruntime::testing::RecordingSyscalls;

TEST(Process, RootKeepsTheDefaultCapabilitiesOnly) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"/bin/true"};
    applyProcessSettings(sys, p);
    const uint64_t keep = defaultCapabilities();
    EXPECT_TRUE(keep & (1ull << CAP_CHOWN));
    EXPECT_FALSE(keep & (1ull << CAP_SYS_ADMIN));
    EXPECT_FALSE(keep & (1ull << CAP_NET_ADMIN));
    EXPECT_TRUE(
        sys.has("prctl " + std::to_string(PR_CAPBSET_DROP) + " " + std::to_string(CAP_SYS_ADMIN)));
    EXPECT_FALSE(
        sys.has("prctl " + std::to_string(PR_CAPBSET_DROP) + " " + std::to_string(CAP_CHOWN)));
    int groups = sys.indexOf("setgroups");
    int gid = sys.indexOf("setresgid 0");
    int uid = sys.indexOf("setresuid 0");
    int caps = sys.indexOf("capset " + std::to_string(keep) + " " + std::to_string(keep) + " 0");
    ASSERT_GE(groups, 0);
    EXPECT_LT(groups, gid);
    EXPECT_LT(gid, uid);
    EXPECT_LT(uid, caps);
    EXPECT_LT(sys.indexOf("prctl " + std::to_string(PR_CAPBSET_DROP)), groups);
}

TEST(Process, NonRootUserGetsGroupsGidUidAndNoCapset) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"/bin/true"};
    p.user = {1000, 100, {10, 20}, "/home/user"};
    p.rlimits = {{RLIMIT_NOFILE, "nofile", 500, 600}};
    p.noNewPrivileges = true;
    applyProcessSettings(sys, p);
    EXPECT_TRUE(sys.has("setgroups 10 20"));
    EXPECT_TRUE(sys.has("setresgid 100"));
    EXPECT_TRUE(sys.has("setresuid 1000"));
    EXPECT_EQ(sys.indexOf("capset"), -1);
    EXPECT_TRUE(sys.has("setrlimit " + std::to_string(RLIMIT_NOFILE) + " 500 600"));
    EXPECT_TRUE(sys.has("prctl " + std::to_string(PR_SET_NO_NEW_PRIVS) + " 1"));
}

TEST(Process, OnlyRequestedRlimitsAreSet) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"/bin/true"};
    applyProcessSettings(sys, p);
    EXPECT_EQ(sys.indexOf("setrlimit"), -1);
}

TEST(Process, FailedUidSwitchIsNamed) {
    RecordingSyscalls sys;
    sys.failOn["setresuid"] = EPERM;
    ProcessSpec p;
    p.args = {"/bin/true"};
    p.user.uid = 1000;
    try {
        applyProcessSettings(sys, p);
        FAIL();
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "setuid `1000`: Operation not permitted");
    }
}

TEST(Process, ExecSearchesTheContainersPath) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"app"};
    p.env = {"PATH=/a:/b"};
    std::string what;
    EXPECT_EQ(execSearch(sys, p, what), -ENOENT);
    EXPECT_EQ(what, "app");
    EXPECT_TRUE(sys.has("execve /a/app"));
    EXPECT_TRUE(sys.has("execve /b/app"));
}

TEST(Process, ExecRemembersPermissionDenied) {
    RecordingSyscalls sys;
    sys.execErrors = {EACCES, ENOENT};
    ProcessSpec p;
    p.args = {"app"};
    p.env = {"PATH=/a:/b"};
    std::string what;
    EXPECT_EQ(execSearch(sys, p, what), -EACCES);
}

TEST(Process, AbsoluteCommandIsNotSearched) {
    RecordingSyscalls sys;
    ProcessSpec p;
    p.args = {"/bin/nosuch"};
    std::string what;
    EXPECT_EQ(execSearch(sys, p, what), -ENOENT);
    EXPECT_EQ(sys.calls, std::vector<std::string>{"execve /bin/nosuch"});
    EXPECT_EQ(what, "/bin/nosuch");
}

TEST(Process, ReportRoundTrip) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    writeReport(p[1], -ENOENT, kExitNotFound, "exec `/x`: No such file or directory");
    ::close(p[1]);
    ChildReport r;
    ASSERT_TRUE(readReport(p[0], r));
    EXPECT_EQ(r.code, -ENOENT);
    EXPECT_EQ(r.exitStatus, 127);
    EXPECT_STREQ(r.message, "exec `/x`: No such file or directory");
    EXPECT_FALSE(readReport(p[0], r)) << "EOF means exec succeeded";
    ::close(p[0]);
}

TEST(Launcher, CloneFlagsAndIdMaps) {
    ContainerSpec s;
    EXPECT_EQ(cloneFlags(s),
              static_cast<unsigned long>(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
                                         CLONE_NEWNET | CLONE_NEWCGROUP));
    s.namespaces.network = false;
    s.namespaces.user = true;
    s.uidMappings = {{0, 100000, 65536}, {65536, 1000, 1}};
    EXPECT_EQ(cloneFlags(s) & CLONE_NEWNET, 0u);
    EXPECT_NE(cloneFlags(s) & CLONE_NEWUSER, 0u);
    EXPECT_EQ(idMapText(s.uidMappings), "0 100000 65536\n65536 1000 1\n");
}
