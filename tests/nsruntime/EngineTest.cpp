// Real containers through the engine API (no state store): what a process sees inside.
// Needs root; each test checks that no mount and no child process is left behind.
#include "Exec.h"
#include "Launcher.h"
#include "ProcFs.h"
#include "Process.h"
#include "TestSupport.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

using namespace mobileops::nsruntime;
using namespace mobileops::nsruntime::testing;
using nlohmann::json;

namespace {

using Result = Captured;

class Engine : public ::testing::Test {
protected:
    void SetUp() override { REQUIRE_ROOT_AND_ROOTFS(); }
    void TearDown() override {
        if (rootfsPath().empty() || ::geteuid() != 0) return;
        EXPECT_EQ(hostMountsUnder(rootfsPath()), 0) << "a mount leaked into the host namespace";
        EXPECT_TRUE(noChildren()) << "a container process was left behind";
    }

    json spec(std::vector<std::string> args) {
        return {{"rootfs", rootfsPath()}, {"hostname", "nstest"}, {"process", {{"args", args}}}};
    }
    ContainerSpec prepared(const json &j) {
        ContainerSpec s = parseSpec(j);
        prepareSpec(s);
        return s;
    }
    Result run(const json &j) { return runCaptured(prepared(j)); }
    Result sh(const std::string &script, json extra = json::object()) {
        json j = spec({"/bin/sh", "-c", script});
        j.merge_patch(extra);
        return run(j);
    }
};

} // namespace

TEST_F(Engine, ProcessIsPid1) {
    auto r = sh("echo $$");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1\n");
}

TEST_F(Engine, HostProcessesAreInvisible) {
    // ls itself is PID 1 and the only process of the namespace.
    auto r = run(spec({"/bin/ls", "-d", "/proc/1", "/proc/2"}));
    EXPECT_EQ(r.out, "/proc/1\n");
    std::string self = "/proc/" + std::to_string(::getpid());
    auto r2 = sh("test -e " + self + " && echo visible || echo invisible");
    EXPECT_EQ(r2.out, "invisible\n");
}

TEST_F(Engine, Hostname) {
    auto r = sh("hostname; cat /proc/sys/kernel/hostname");
    EXPECT_EQ(r.out, "nstest\nnstest\n");
}

TEST_F(Engine, UmaskIsTheSpecs) {
    auto r = sh("umask; touch /tmp/f && stat -c %a /tmp/f", {{"process", {{"umask", 077}}}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "0077\n600\n");
    r = sh("umask");
    EXPECT_EQ(r.out, "0022\n") << "the default";
    json bad = spec({"/bin/true"});
    bad["process"]["umask"] = 01000;
    EXPECT_THROW(prepared(bad), Error);
}

// No PID, IPC or UTS namespace of its own (podman --pid/--ipc/--uts host): the caller's.
TEST_F(Engine, NamespacesLeftOutAreTheCallers) {
    auto own = [](const char *type) {
        char buf[64] = {};
        ssize_t n = ::readlink((std::string("/proc/self/ns/") + type).c_str(), buf, sizeof buf - 1);
        return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    };
    auto r = sh(
        "for n in pid ipc uts; do readlink /proc/self/ns/$n; done; test $$ != 1 && "
        "echo not-pid-1",
        {{"namespaces", {{"pid", false}, {"ipc", false}, {"uts", false}}}, {"hostname", nullptr}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, own("pid") + "\n" + own("ipc") + "\n" + own("uts") + "\nnot-pid-1\n") << r.err;
}

TEST_F(Engine, MaskedPathsAreEmpty) {
    std::string script;
    for (const char *p : {"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                          "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"})
        script += std::string("p=") + p +
                  "; if [ -d $p ]; then echo $p $(ls -A $p | wc -l); elif [ -e $p ]; then echo $p "
                  "$(cat $p | wc -c); fi; ";
    auto r = sh(script);
    EXPECT_EQ(r.status, 0) << r.err;
    std::istringstream in(r.out);
    int checked = 0;
    for (std::string path, count; in >> path >> count; ++checked) EXPECT_EQ(count, "0") << path;
    EXPECT_GE(checked, 3) << r.out;
    // And on the host they are not empty (the test means something).
    EXPECT_GT(slurp("/proc/timer_list").size(), 0u);
}

TEST_F(Engine, ReadonlyPathsRefuseWrites) {
    auto r = sh("echo evil > /proc/sys/kernel/hostname; echo rc=$?; hostname; "
                "grep -E ' /proc/(sys|irq|bus|fs|sysrq-trigger) ' /proc/self/mountinfo | "
                "grep -c ' ro,'");
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos) << r.err;
    EXPECT_EQ(r.out.substr(0, 12), "rc=1\nnstest\n");
    EXPECT_GE(std::stoi(r.out.substr(12)), 3);
}

TEST_F(Engine, DevContents) {
    auto r = sh(
        "ls /dev | tr '\\n' ' '; echo; "
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; "
        "echo x > /dev/null && head -c 8 /dev/urandom | wc -c; "
        "readlink /dev/ptmx; "
        "grep -E ' /dev/(pts|shm|mqueue) ' /proc/self/mountinfo | awk '{print $5, $(NF-2)}'; "
        "touch /dev/shm/ok && echo shm-writable");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out,
              "core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero \n"
              "8\npts/ptmx\n/dev/pts devpts\n/dev/shm tmpfs\n/dev/mqueue mqueue\nshm-writable\n");
}

TEST_F(Engine, ConsoleWithTerminal) {
    json j = spec({"/bin/sh", "-c", "test -c /dev/console && test -t 0 && test -t 1 && echo tty"});
    j["process"]["terminal"] = true;
    ContainerSpec s = prepared(j);
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    int status = runForeground(RealSyscalls::instance(), s, stdio, [](ChildProcess &) {});
    EXPECT_EQ(status, 0);
    EXPECT_NE(out.text().find("tty"), std::string::npos) << out.text();
}

TEST_F(Engine, ReadonlyRootGivesErofs) {
    auto r =
        sh("touch /newfile; touch /tmp/x; touch /dev/shm/y && echo dev-ok", {{"readonly", true}});
    EXPECT_NE(r.err.find("touch: /newfile: Read-only file system"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("touch: /tmp/x: Read-only file system"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "dev-ok\n");
    struct stat st;
    EXPECT_NE(::stat((rootfsPath() + "/newfile").c_str(), &st), 0);
}

TEST_F(Engine, UserAndGroupSwitch) {
    auto r = sh("id", {{"process", {{"user", "user"}}}});
    EXPECT_EQ(r.out, "uid=1000(user) gid=1000(user) groups=100(users)\n");
    r = sh("id -u; id -g; id -G; echo $HOME",
           {{"process", {{"user", {{"uid", 1234}, {"gid", 4321}, {"additionalGids", {5, 6}}}}}}});
    EXPECT_EQ(r.out, "1234\n4321\n4321 5 6\n/\n");
    // The default capability set is gone for a non-root user.
    r = sh("grep CapEff /proc/self/status", {{"process", {{"user", "1000:1000"}}}});
    EXPECT_EQ(r.out, "CapEff:\t0000000000000000\n");
}

// The core's form for `--user NAME[:GROUP] --group-add ...`: the user's groups from the
// rootfs's /etc/group, the spec's gids and its named groups (the kernel sorts them).
TEST_F(Engine, NamedUserKeepsSupplementaryGroups) {
    auto r = sh("id -u; id -g; id -G", {{"process",
                                         {{"user",
                                           {{"name", "user"},
                                            {"additionalGids", {4242}},
                                            {"additionalGroups", {"tty", "daemon"}}}}}}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "1000\n1000\n1000 1 5 100 4242\n");
    r = sh("id -G", {{"process", {{"user", {{"name", "user:tty"}, {"additionalGids", {7}}}}}}});
    EXPECT_EQ(r.out, "5 7 100\n");
    r = sh("id -G", {{"process", {{"user", {{"name", "1000"}, {"additionalGroups", {"root"}}}}}}});
    EXPECT_EQ(r.out, "1000 0 100\n");
    r = sh("id -G", {{"process",
                      {{"user", {{"uid", 1234}, {"gid", 4321}, {"additionalGroups", {"tty"}}}}}}});
    EXPECT_EQ(r.out, "4321 5\n");
    try {
        sh("id -G",
           {{"process", {{"user", {{"name", "user"}, {"additionalGroups", {"nosuch"}}}}}}});
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "group `nosuch` not found in the container's /etc/group");
        EXPECT_EQ(e.code(), MO_E_INVALID);
    }
}

TEST_F(Engine, RootHasOnlyTheDefaultCapabilities) {
    auto r = sh("grep -E 'CapEff|CapBnd|CapInh' /proc/self/status");
    char expected[128];
    std::snprintf(expected, sizeof expected,
                  "CapInh:\t%016llx\nCapEff:\t%016llx\nCapBnd:\t%016llx\n", 0ull,
                  static_cast<unsigned long long>(defaultCapabilities()),
                  static_cast<unsigned long long>(defaultCapabilities()));
    EXPECT_EQ(r.out, expected);
}

TEST_F(Engine, EnvAndCwd) {
    auto r = sh("echo $FOO; pwd; echo $PATH",
                {{"process", {{"env", {"FOO=bar baz", "PATH=/bin:/sbin"}}, {"cwd", "/tmp"}}}});
    EXPECT_EQ(r.out, "bar baz\n/tmp\n/bin:/sbin\n");
    try {
        sh("pwd", {{"process", {{"cwd", "/nonexistent"}}}});
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_STREQ(e.what(), "cwd `/nonexistent`: No such file or directory");
        EXPECT_EQ(e.exitStatus(), 125);
    }
}

TEST_F(Engine, RlimitApplied) {
    auto r = sh(
        "ulimit -n; ulimit -Hn",
        {{"process", {{"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"soft", 500}, {"hard", 600}}}}}}});
    EXPECT_EQ(r.out, "500\n600\n");
    // Unrequested limits are inherited.
    struct rlimit cur;
    ::getrlimit(RLIMIT_NOFILE, &cur);
    r = sh("ulimit -Hn");
    EXPECT_EQ(r.out, std::to_string(cur.rlim_max) + "\n");
}

// The core writes `--ulimit core=-1` (unlimited) as -1; 2^64-1 is the same limit.
TEST_F(Engine, UnlimitedRlimit) {
    auto r =
        sh("ulimit -c; ulimit -Hc",
           {{"process", {{"rlimits", {{{"type", "RLIMIT_CORE"}, {"soft", -1}, {"hard", -1}}}}}}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "unlimited\nunlimited\n");
    r = sh("ulimit -c; ulimit -Hc",
           {{"process",
             {{"rlimits", {{{"type", "RLIMIT_CORE"}, {"soft", 0}, {"hard", UINT64_MAX}}}}}}});
    EXPECT_EQ(r.out, "0\nunlimited\n");
}

TEST_F(Engine, RlimitAboveHardLimitRefusedBeforeCloning) {
    struct rlimit cur;
    ::getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_max == RLIM_INFINITY) GTEST_SKIP() << "no hard nofile limit";
    uint64_t want = cur.rlim_max + 10000;
    json j = spec({"/bin/true"});
    j["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", want}, {"hard", want}}};
    try {
        prepared(j);
        GTEST_SKIP() << "this host may raise the hard limit";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "ulimit `nofile=" + std::to_string(want) +
                                             "`: exceeds the hard limit " +
                                             std::to_string(cur.rlim_max) + " of this host");
        EXPECT_EQ(e.code(), MO_E_INVALID);
    }
}

TEST_F(Engine, ExitCodePropagates) {
    EXPECT_EQ(sh("exit 42").status, 42);
    EXPECT_EQ(run(spec({"/bin/true"})).status, 0);
    EXPECT_EQ(run(spec({"/bin/false"})).status, 1);
}

TEST_F(Engine, SignalGives128PlusN) {
    ChildIo io;
    ContainerSpec s = prepared(spec({"/bin/sleep", "30"}));
    ChildProcess child = launch(RealSyscalls::instance(), s, io);
    child.kill(SIGKILL);
    int sig = 0;
    EXPECT_EQ(child.wait(&sig), 137);
    EXPECT_EQ(sig, SIGKILL);
    // Through the init, a signal the process dies of becomes the exit status too.
    json j = spec({"/bin/sh", "-c", "kill -USR1 $$"});
    j["process"]["init"] = true;
    EXPECT_EQ(run(j).status, 128 + SIGUSR1);
}

TEST_F(Engine, MissingCommandIs127WithMessage) {
    for (const char *cmd : {"/bin/nosuch", "nosuch"}) {
        try {
            run(spec({cmd}));
            FAIL() << "expected a launch error";
        } catch (const LaunchError &e) {
            EXPECT_EQ(std::string(e.what()),
                      std::string("exec `") + cmd + "`: No such file or directory");
            EXPECT_EQ(e.exitStatus(), 127);
            EXPECT_EQ(e.code(), -ENOENT);
        }
    }
    try {
        run(spec({"/etc/passwd"}));
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_EQ(std::string(e.what()), "exec `/etc/passwd`: Permission denied");
        EXPECT_EQ(e.exitStatus(), 126);
    }
}

TEST_F(Engine, UserNamespaceMapping) {
    auto r = sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; grep CapEff /proc/self/status",
                {{"userns",
                  {{"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}}}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(
        r.out, "         0     100000      65536\n         0     100000      65536\n0\n"
               "CapEff:\t" +
                   [] {
                       char b[32];
                       std::snprintf(b, sizeof b, "%016llx",
                                     static_cast<unsigned long long>(defaultCapabilities()));
                       return std::string(b);
                   }() +
                   "\n");
}

TEST_F(Engine, UserNamespaceWithHostNetwork) {
    auto r = sh("ls /sys/class/net | grep -c . ; touch /sys/x 2>&1 | grep -c Read-only",
                {{"network", {{"mode", "host"}}},
                 {"userns",
                  {{"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}}}});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out, "");
}

TEST_F(Engine, PivotRootNotChroot) {
    std::string marker = "/tmp/nsruntime-host-marker-" + std::to_string(::getpid());
    { std::ofstream(marker) << "host"; }
    auto r = sh("test -e " + marker +
                " && echo host-visible; "
                "awk '$5 == \"/\" {print $4}' /proc/self/mountinfo; "
                "ls / | tr '\\n' ' '");
    ::unlink(marker.c_str());
    EXPECT_EQ(r.out, rootfsPath() + "\nbin dev etc home proc root run sbin sys tmp usr var ");
    // Only container mounts: no host mount table under an old root.
    auto m = sh("wc -l < /proc/self/mountinfo");
    EXPECT_LT(std::stoi(m.out), 30);
}

TEST_F(Engine, NetworkNamespaceHasOnlyLoopbackUp) {
    // Retries instead of sleeps: the listener may start late on a loaded machine. Send
    // until the listener has written what it got (it takes one connection, then exits):
    // a send that connected is not yet a line in the file, and CI on a loaded host once
    // saw the file stay empty for 5 s after the first successful send.
    auto r = sh("ls /sys/class/net; cat /sys/class/net/lo/flags; "
                "(nc -l -p 5555 > /dev/shm/got &); "
                "for i in $(seq 200); do [ -s /dev/shm/got ] && break; "
                "echo over-lo | nc 127.0.0.1 5555 2>/dev/null; sleep 0.1; done; "
                "cat /dev/shm/got");
    EXPECT_EQ(r.out, "lo\n0x9\nover-lo\n") << r.err;
    r = sh("ls /sys/class/net", {{"network", {{"mode", "none"}}}});
    EXPECT_EQ(r.out, "lo\n");
}

TEST_F(Engine, InitReapsZombies) {
    // The subshell's child is orphaned to PID 1 and exits: only an init that reaps
    // leaves no zombie.
    json j = spec({"/bin/sh", "-c",
                   "(sleep 0.1 &); sleep 0.6; ps -o stat,comm | grep -c '^Z'; "
                   "cat /proc/1/status | grep -c State"});
    j["process"]["init"] = true;
    auto r = run(j);
    EXPECT_EQ(r.out, "0\n1\n");
    j["process"]["args"] = {"/bin/sh", "-c", "echo $$; exit 3"};
    r = run(j);
    EXPECT_EQ(r.out, "2\n") << "the process is PID 2 under the init";
    EXPECT_EQ(r.status, 3);
}

TEST_F(Engine, SpecMounts) {
    char dir[] = "/tmp/nsruntime-vol-XXXXXX";
    ASSERT_TRUE(::mkdtemp(dir));
    { std::ofstream(std::string(dir) + "/hello") << "from host"; }
    json j = spec({"/bin/sh", "-c",
                   "cat /data/hello; echo x > /data/new; echo rc=$?; "
                   "echo y > /scratch/f && cat /scratch/f; "
                   "echo x > /rw/new2 && echo rw-ok"});
    j["mounts"] = {
        {{"destination", "/data"}, {"source", dir}, {"type", "bind"}, {"options", {"ro"}}},
        {{"destination", "/scratch"}, {"type", "tmpfs"}, {"options", {"size=1m"}}},
        {{"destination", "/rw"}, {"source", dir}, {"type", "bind"}}};
    auto r = run(j);
    std::system((std::string("rm -rf ") + dir).c_str());
    EXPECT_EQ(r.out, "from hostrc=1\ny\nrw-ok\n");
    EXPECT_NE(r.err.find("Read-only file system"), std::string::npos);
    ::rmdir((rootfsPath() + "/data").c_str());
    ::rmdir((rootfsPath() + "/scratch").c_str());
    ::rmdir((rootfsPath() + "/rw").c_str());
}

// Symlinks in the image must not redirect a mount out of the rootfs (the class of
// CVE-2021-30465 and CVE-2023-27561): destinations resolve as if the rootfs were /.
TEST_F(Engine, SymlinkDestinationStaysInRootfs) {
    const std::string name = "nsruntime-escape-" + std::to_string(::getpid());
    const std::string outside = "/tmp/" + name;
    std::string link = rootfsPath() + "/escape";
    ASSERT_EQ(::symlink("/../../../../../../tmp", link.c_str()), 0);
    json j = spec({"/bin/sh", "-c", "grep -c ' /tmp/" + name + " ' /proc/self/mountinfo"});
    j["mounts"] = {{{"destination", "/escape/" + name}, {"type", "tmpfs"}}};
    Result r;
    EXPECT_NO_THROW(r = run(j));
    struct stat st;
    bool escaped = ::stat(outside.c_str(), &st) == 0;
    bool inside = ::stat((rootfsPath() + "/tmp/" + name).c_str(), &st) == 0;
    ::rmdir(outside.c_str());
    ::rmdir((rootfsPath() + "/tmp/" + name).c_str());
    ::unlink(link.c_str());
    EXPECT_FALSE(escaped) << "created " << outside << " on the host";
    EXPECT_TRUE(inside);
    EXPECT_EQ(r.out, "1\n") << "the tmpfs is mounted at the rootfs's /tmp/" << name;
}

TEST_F(Engine, FailedSetupLeavesNothing) {
    json j = spec({"/bin/true"});
    // A destination under a regular file cannot be created.
    j["mounts"] = {{{"destination", "/etc/passwd/x"}, {"type", "tmpfs"}}};
    try {
        run(j);
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_EQ(e.exitStatus(), 125);
        EXPECT_NE(std::string(e.what()).find("`/etc/passwd/x`"), std::string::npos) << e.what();
    }
}

TEST_F(Engine, ExecJoinsTheContainer) {
    ChildIo io;
    ContainerSpec s = prepared(spec({"/bin/sleep", "30"}));
    ChildProcess init = launch(RealSyscalls::instance(), s, io);
    struct Killer {
        ChildProcess &c;
        ~Killer() {
            c.kill(SIGKILL);
            c.wait();
        }
    } killer{init};

    ProcessSpec p = s.process;
    p.args = {"/bin/sh", "-c", "hostname; ls -d /proc/[0-9]* | tr '\\n' ' '; id -u; exit 7"};
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    int status = execInContainer(RealSyscalls::instance(), init.pid(),
                                 processStartTime(init.pid()).value_or(0), p, stdio);
    EXPECT_EQ(status, 7);
    std::string text = out.text();
    EXPECT_EQ(text.substr(0, 7), "nstest\n");
    EXPECT_NE(text.find("/proc/1 "), std::string::npos) << text;
    EXPECT_EQ(text.find("/proc/" + std::to_string(::getpid()) + " "), std::string::npos);

    p.args = {"/bin/nosuch"};
    try {
        execInContainer(RealSyscalls::instance(), init.pid(),
                        processStartTime(init.pid()).value_or(0), p, stdio);
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_EQ(e.exitStatus(), 127);
    }
    // Our own PID namespace is intact after the exec.
    EXPECT_EQ(namespaceInode(::getpid(), "pid"), namespaceInode(::getpid(), "pid_for_children"));
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
