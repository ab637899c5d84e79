// `mobileops container ...` through the dispatcher, the workflow script and the nsruntime
// plugin, on a busybox rootfs built by tools/make-rootfs.sh. Needs root.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace mobileops::test;

namespace {

class ContainerCli : public CliTest {
protected:
    // Start the dispatcher without waiting; stdout and stderr go to /dev/null.
    pid_t spawn(const std::vector<std::string> &args) {
        pid_t pid = ::fork();
        if (pid == 0) {
            int null = ::open("/dev/null", O_RDWR);
            ::dup2(null, 0);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::setenv("MOBILEOPS_ROOT", (_tmp.path() + "/root").c_str(), 1);
            ::setenv("MOBILEOPS_RUN", (_tmp.path() + "/run").c_str(), 1);
            ::setenv("MOBILEOPS_CONFIG", (_tmp.path() + "/none.conf").c_str(), 1);
            std::vector<std::string> all{dispatcher()};
            all.insert(all.end(), args.begin(), args.end());
            std::vector<char *> argv;
            for (auto &a : all) argv.push_back(const_cast<char *>(a.c_str()));
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        return pid;
    }

    static int waitFor(pid_t pid) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    // Names in `container list --all --json`.
    std::set<std::string> names() {
        Result r = mo({"container", "list", "--all", "--json"});
        std::set<std::string> out;
        for (size_t p = 0; (p = r.out.find("\"name\": \"", p)) != std::string::npos;) {
            p += 9;
            out.insert(r.out.substr(p, r.out.find('"', p) - p));
        }
        return out;
    }

    // Container cgroups (mobileops/<64 hex>) on every hierarchy of this host.
    static size_t containerCgroups() {
        size_t n = 0;
        std::error_code ec;
        std::vector<std::filesystem::path> hierarchies = {"/sys/fs/cgroup"}; // pure v2
        for (const auto &h : std::filesystem::directory_iterator("/sys/fs/cgroup", ec))
            hierarchies.push_back(h.path());
        for (const auto &h : hierarchies) {
            std::error_code ec2;
            for (auto it = std::filesystem::directory_iterator(h / "mobileops", ec2);
                 !ec2 && it != std::filesystem::directory_iterator(); ++it)
                if (it->is_directory() && it->path().filename().string().size() == 64) ++n;
        }
        return n;
    }

    size_t entries(const std::string &dir) {
        std::error_code ec;
        size_t n = 0;
        for (auto it = std::filesystem::directory_iterator(dir, ec);
             !ec && it != std::filesystem::directory_iterator(); ++it)
            ++n;
        return n;
    }

    // Run a shell snippet in a fresh container with extra flags; stdout.
    std::string inside(const std::vector<std::string> &flags, const std::string &script,
                       int expectStatus = 0) {
        std::vector<std::string> args{"container", "run", "--rm"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.insert(args.end(), {_rootfs, "/bin/sh", "-c", script});
        Result r = mo(args);
        EXPECT_EQ(r.status, expectStatus) << script << ": " << r.err;
        return r.out;
    }

    Result underScript(const std::string &shellCommand);
};

TEST_F(ContainerCli, RunShowsOutputAndExitsWithTheContainersStatus) {
    Result r = mo({"container", "run", "--rm", "--hostname", "box", _rootfs, "/bin/sh", "-c",
                   "echo pid=$$ host=$(hostname); exit 3"});
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_EQ(r.out, "pid=1 host=box\n");
}

TEST_F(ContainerCli, MissingCommandExits127WithOneLine) {
    Result r = mo({"container", "run", "--rm", _rootfs, "/bin/nosuch"});
    EXPECT_EQ(r.status, 127);
    EXPECT_EQ(r.err, "mobileops: exec `/bin/nosuch`: No such file or directory\n");
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

TEST_F(ContainerCli, KilledBySignalGives128PlusN) {
    Result r =
        mo({"container", "run", "--rm", "--init", _rootfs, "/bin/sh", "-c", "kill -TERM $$"});
    EXPECT_EQ(r.status, 128 + 15) << r.err;
}

TEST_F(ContainerCli, BadInputIsNamed) {
    Result r = mo({"container", "run", "--rm", _tmp.path() + "/nope", "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("rootfs `" + _tmp.path() + "/nope`: No such file or directory"),
              std::string::npos)
        << r.err;
    r = mo({"container", "run", "--rm", "--ulimit", "nofile=abc", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--ulimit `nofile=abc`"), std::string::npos) << r.err;
    r = mo({"container", "run", "--rm", "--user", "x:y:z", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--user `x:y:z`"), std::string::npos) << r.err;
    r = mo({"container", "create", "a/b", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("a/b"), std::string::npos) << r.err;
    r = mo({"container", "run", "--bogus", _rootfs});
    EXPECT_EQ(r.status, 2);
}

TEST_F(ContainerCli, BootListExecStopDelete) {
    Result r = mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "boot", "web", _rootfs, "/bin/true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("`web` is already in use"), std::string::npos) << r.err;
    r = mo({"container", "list"});
    EXPECT_NE(r.out.find("web"), std::string::npos);
    EXPECT_NE(r.out.find("running"), std::string::npos) << r.out;
    r = mo({"container", "exec", "web", "/bin/sh", "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; exit 4"});
    EXPECT_EQ(r.status, 4) << r.err;
    EXPECT_EQ(r.out, "/bin/sleep 1000 ");
    r = mo({"container", "delete", "web"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("running"), std::string::npos) << r.err;
    r = mo({"container", "stop", "--time", "1", "web"}); // sleep as PID 1 ignores SIGTERM
    EXPECT_EQ(r.status, 0) << r.err;
    r = mo({"container", "inspect", "web"});
    EXPECT_NE(r.out.find("\"status\": \"stopped\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\"exit_code\": 137"), std::string::npos) << r.out;
    r = mo({"container", "delete", "web"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

TEST_F(ContainerCli, IsolationSeenFromInside) {
    // The shell expands the glob itself: the only process is the shell, PID 1.
    EXPECT_EQ(inside({}, "echo $$; echo /proc/[0-9]*"), "1\n/proc/1\n");
    EXPECT_EQ(inside({"--hostname", "inner"}, "hostname"), "inner\n");
    EXPECT_EQ(inside({}, "ls /sys/class/net"), "lo\n");
    // masked: files read as empty (/proc/kcore is absent on some kernels; these are not)
    EXPECT_EQ(
        inside({}, "cat /sys/class/net/lo/operstate; wc -c < /proc/keys; wc -c < /proc/timer_list"),
        "unknown\n0\n0\n");
    EXPECT_EQ(inside({}, "ls /sys/firmware | wc -l"), "0\n");
    EXPECT_EQ(inside({}, "echo x 2>/dev/null > /proc/sys/kernel/domainname || echo ro; "
                         "echo c 2>/dev/null > /proc/sysrq-trigger || echo ro; "
                         "touch /sys/x 2>/dev/null || echo ro"),
              "ro\nro\nro\n");
    std::string dev =
        inside({}, "cd /dev && ls -d null zero full random urandom tty ptmx pts shm mqueue");
    EXPECT_EQ(dev, "full\nmqueue\nnull\nptmx\npts\nrandom\nshm\ntty\nurandom\nzero\n");
    // pivot_root: nothing of the host's tree is mounted, / is the rootfs
    // (field 5 of mountinfo is the mount point)
    std::string points = inside({}, "cut -d' ' -f5 /proc/self/mountinfo");
    EXPECT_EQ(points.rfind("/\n", 0), 0u) << points;
    EXPECT_EQ(points.find("/work"), std::string::npos) << points;
    EXPECT_EQ(points.find("old"), std::string::npos) << points;
    EXPECT_EQ(inside({}, "ls /proc/1/root/ | head -3"), "bin\ndev\netc\n");
    // processes of the host are invisible: the test binary's pid is not there
    EXPECT_EQ(
        inside({}, "test -e /proc/" + std::to_string(::getpid()) + " && echo seen || echo hidden"),
        "hidden\n");
}

// --pid/--ipc/--uts host share the caller's namespaces, as podman's do; --sysctl sets a
// parameter of the container's own namespaces and refuses one that would change the host.
TEST_F(ContainerCli, HostNamespacesAndSysctls) {
    auto nsOf = [](const char *type) {
        return std::filesystem::read_symlink(std::string("/proc/self/ns/") + type).string();
    };
    EXPECT_EQ(inside({"--pid", "host"}, "test -e /proc/" + std::to_string(::getpid()) +
                                            " && echo seen; readlink "
                                            "/proc/self/ns/pid"),
              "seen\n" + nsOf("pid") + "\n");
    EXPECT_EQ(inside({"--ipc", "host"}, "readlink /proc/self/ns/ipc"), nsOf("ipc") + "\n");
    char host[256] = {};
    ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
    EXPECT_EQ(inside({"--uts", "host", "--name", "utsbox"}, "hostname"), std::string(host) + "\n");
    std::istringstream own(inside({"--pid", "private", "--ipc", "private", "--uts", "private"},
                                  "for n in pid ipc uts; do readlink /proc/self/ns/$n; done"));
    for (const char *type : {"pid", "ipc", "uts"}) {
        std::string line;
        ASSERT_TRUE(std::getline(own, line)) << type;
        EXPECT_NE(line, nsOf(type)) << "--" << type << " private";
        EXPECT_EQ(line.rfind(std::string(type) + ":[", 0), 0u) << line;
    }

    std::ifstream hostPortStart("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    std::string before;
    std::getline(hostPortStart, before);
    EXPECT_EQ(inside({"--sysctl", "net.ipv4.ip_unprivileged_port_start=80", "--sysctl",
                      "kernel.shmmni=100"},
                     "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni"),
              "80\n100\n");
    std::ifstream after("/proc/sys/net/ipv4/ip_unprivileged_port_start");
    std::string now;
    std::getline(after, now);
    EXPECT_EQ(now, before) << "the host's value changed";

    struct Refused {
        std::vector<std::string> flags;
        const char *message;
    };
    for (const Refused &bad : std::vector<Refused>{
             {{"--sysctl", "vm.swappiness=10"},
              "not a namespaced sysctl: it would change the host"},
             {{"--sysctl", "kernel.shmmni=100", "--ipc", "host"},
              "needs the container's own IPC namespace"},
             {{"--sysctl", "novalue"}, "expected KEY=VALUE"},
             {{"--sysctl", "../x=1"}, "not a sysctl name"},
             {{"--pid", "sibling"}, "expected host or private"},
             {{"--uts", "host", "--hostname", "x"}, "hostname"},
             {{"--pid", "host", "--runtime", "krun"}, "the host's PID namespace"}}) {
        std::vector<std::string> args{"container", "run", "--rm"};
        args.insert(args.end(), bad.flags.begin(), bad.flags.end());
        args.insert(args.end(), {_rootfs, "/bin/true"});
        Result r = mo(args);
        EXPECT_NE(r.status, 0) << bad.flags[0] << " " << bad.flags[1];
        EXPECT_NE(r.err.find(bad.message), std::string::npos) << r.err;
    }
    EXPECT_EQ(mo({"container", "list", "--all", "--json"}).out, "[]\n");
}

TEST_F(ContainerCli, UserEnvWorkdirRlimitsReadOnlyAndUserns) {
    EXPECT_EQ(inside({"--user", "1000:1000", "--group-add", "10"}, "id -u; id -g; id -G"),
              "1000\n1000\n1000 10\n");
    EXPECT_EQ(inside({"-e", "FOO=bar", "-w", "/tmp"}, "echo $FOO; pwd"), "bar\n/tmp\n");
    EXPECT_EQ(inside({"--ulimit", "nofile=1024:2048"}, "ulimit -n; ulimit -Hn"), "1024\n2048\n");
    EXPECT_EQ(inside({"--read-only"}, "touch /x 2>&1; echo $?"),
              "touch: /x: Read-only file system\n1\n");
    // The mapped root (host uid 100000) must be able to reach the rootfs.
    std::filesystem::permissions(_tmp.path(), std::filesystem::perms(0755));
    EXPECT_EQ(inside({"--userns", "100000:65536"}, "cat /proc/self/uid_map | tr -s ' '; id -u"),
              " 0 100000 65536\n0\n");
}

TEST_F(ContainerCli, InitReapsZombiesAndForwardsSignals) {
    // Orphans re-parented to PID 1 must be reaped: none left as zombies.
    EXPECT_EQ(inside({"--init"}, "(sleep 0.1 &) ; sleep 0.5; ps -o stat | grep -c Z || true"),
              "0\n");
    Result r = mo({"container", "boot", "--init", "svc", _rootfs, "/bin/sleep", "1000"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = mo({"container", "kill", "--signal", "TERM", "svc"}); // forwarded to sleep, which dies
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(mo({"container", "wait", "svc"}).status, 128 + SIGTERM);
}

TEST_F(ContainerCli, TwentyParallelBootsLeaveTwentyConsistentContainers) {
    std::vector<pid_t> pids;
    for (int i = 0; i < 20; ++i)
        pids.push_back(
            spawn({"container", "boot", "p" + std::to_string(i), _rootfs, "/bin/sleep", "1000"}));
    for (pid_t p : pids) EXPECT_EQ(waitFor(p), 0);
    std::set<std::string> got = names();
    EXPECT_EQ(got.size(), 20u);
    Result r = mo({"container", "list", "--json"});
    size_t running = 0;
    for (size_t p = 0; (p = r.out.find("\"status\": \"running\"", p)) != std::string::npos; ++p)
        ++running;
    EXPECT_EQ(running, 20u) << r.out;
    pids.clear();
    for (int i = 0; i < 20; ++i)
        pids.push_back(spawn({"container", "delete", "--force", "p" + std::to_string(i)}));
    for (pid_t p : pids) EXPECT_EQ(waitFor(p), 0);
    EXPECT_TRUE(names().empty());
    EXPECT_EQ(entries(_tmp.path() + "/root/containers"), 0u);
}

TEST_F(ContainerCli, SystemGcRepairsWhatAKilledCreateLeft) {
    // Kill `boot` at several points of its work; afterwards gc must leave only complete
    // containers, and deleting those must leave nothing at all.
    size_t cgroupsBefore = containerCgroups();
    for (int delayMs : {0, 1, 2, 4, 8, 12, 20, 40}) {
        pid_t pid = spawn(
            {"container", "boot", "k" + std::to_string(delayMs), _rootfs, "/bin/sleep", "1000"});
        std::this_thread::sleep_for(std::chrono::milliseconds(delayMs));
        ::kill(pid, SIGKILL);
        waitFor(pid);
    }
    Result gc = mo({"system", "gc", "--json"});
    EXPECT_EQ(gc.status, 0) << gc.err;
    for (const std::string &name : names()) {
        Result r = mo({"container", "delete", "--force", name});
        EXPECT_EQ(r.status, 0) << name << ": " << r.err;
    }
    EXPECT_TRUE(names().empty());
    EXPECT_EQ(mo({"system", "gc", "--json"}).out, "{\n  \"released\": []\n}\n");
    EXPECT_EQ(entries(_tmp.path() + "/root/containers"), 0u);
    EXPECT_EQ(containerCgroups(), cgroupsBefore) << "a killed create left its cgroup";
    // no container process survives: nothing runs from this test's rootfs
    for (const auto &proc : std::filesystem::directory_iterator("/proc")) {
        std::error_code ec;
        auto root = std::filesystem::read_symlink(proc.path() / "root", ec);
        if (!ec) {
            EXPECT_NE(root.string().rfind(_rootfs, 0), 0u) << "process left: " << proc.path();
        }
    }
}

TEST_F(ContainerCli, ListAndInspectReconcileAfterTheMonitorIsKilled) {
    ASSERT_EQ(mo({"container", "boot", "m", _rootfs, "/bin/sleep", "1000"}).status, 0);
    auto state = nlohmann::json::parse(mo({"container", "inspect", "m"}).out);
    int pid = state.value("pid", 0), monitor = state.value("monitor_pid", 0);
    ASSERT_GT(pid, 0);
    ASSERT_GT(monitor, 0);
    ASSERT_EQ(::kill(monitor, SIGKILL), 0);
    // The container outlives its monitor and is still seen running.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(nlohmann::json::parse(mo({"container", "inspect", "m"}).out)["status"], "running");
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    for (int i = 0; i < 50 && ::kill(pid, 0) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    state = nlohmann::json::parse(mo({"container", "inspect", "m"}).out);
    EXPECT_EQ(state["status"], "stopped") << state.dump();
    EXPECT_EQ(mo({"container", "delete", "m"}).status, 0);
}

// `shellCommand` run by script(1), which gives it a pty as stdin, stdout and stderr;
// `$M` in it is the dispatcher. `out`: everything the pty showed, as script recorded it.
// script's own stdin stays open (a pipe nobody writes): at its end script would type an
// EOF character into the pty, which -i rightly forwards into the container.
Result ContainerCli::underScript(const std::string &shellCommand) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0) return {};
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        ::setenv("M", dispatcher().c_str(), 1);
        ::setenv("MOBILEOPS_ROOT", (_tmp.path() + "/root").c_str(), 1);
        ::setenv("MOBILEOPS_RUN", (_tmp.path() + "/run").c_str(), 1);
        ::setenv("MOBILEOPS_CONFIG", (_tmp.path() + "/none.conf").c_str(), 1);
        ::execl("/usr/bin/script", "script", "-qec", shellCommand.c_str(), "/dev/null", nullptr);
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    Result r;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) r.out.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    r.status = waitFor(pid);
    ::close(in[1]);
    return r;
}

TEST_F(ContainerCli, TtyGivesTheProcessATerminal) {
    if (::access("/usr/bin/script", X_OK) != 0)
        GTEST_SKIP() << "needs script(1) from util-linux for a pty";
    Result r =
        underScript("$M container run --rm -t " + _rootfs +
                    " /bin/sh -c 'test -t 0 && test -t 1 && test -t 2 && echo all-tty; tty'");
    EXPECT_EQ(r.status, 0) << r.err;
    // its own devpts's terminal, as with runc and podman
    EXPECT_EQ(r.out, "all-tty\r\n/dev/pts/0\r\n");
}

TEST_F(ContainerCli, ExecTtyGivesTheProcessItsControllingTerminal) {
    if (::access("/usr/bin/script", X_OK) != 0)
        GTEST_SKIP() << "needs script(1) from util-linux for a pty";
    ASSERT_EQ(mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"}).status, 0);
    // The pty comes from the container's own devpts, so it has a name there; field 7 of
    // stat is the controlling terminal (0: none); `exit 5` comes back as the status.
    const std::string probe =
        "/bin/sh -c 'for fd in 0 1 2; do test -t $fd && echo $fd-tty; done; tty; "
        "test $(cut -d\" \" -f7 /proc/self/stat) != 0 && echo ctty; stat -c %U $(tty); exit 5'";
    for (const char *flags : {"-t", "-it"}) {
        Result r = underScript("$M container exec " + std::string(flags) + " web " + probe);
        EXPECT_EQ(r.status, 5) << flags << ": " << r.out;
        EXPECT_EQ(r.out, "0-tty\r\n1-tty\r\n2-tty\r\n/dev/pts/0\r\nctty\r\nroot\r\n") << flags;
    }
    // The terminal belongs to the process user, as after a login.
    Result r = underScript("$M container exec -t -u 1000 web /bin/sh -c 'stat -c %u $(tty)'");
    EXPECT_EQ(r.status, 0) << r.out;
    EXPECT_EQ(r.out, "1000\r\n");
}

TEST_F(ContainerCli, TtyOutputIsExactlyWhatTheContainersPtyProduces) {
    if (::access("/usr/bin/script", X_OK) != 0)
        GTEST_SKIP() << "needs script(1) from util-linux for a pty";
    // The container's pty turns \n into \r\n; the user's terminal must not do it again.
    Result r =
        underScript("$M container run --rm -t " + _rootfs + " /bin/sh -c 'printf \"a\\nb\\n\"'");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "a\r\nb\r\n");
    r = underScript("$M container run --rm -it " + _rootfs + " /bin/sh -c 'printf \"a\\nb\\n\"'");
    EXPECT_EQ(r.out, "a\r\nb\r\n");
    ASSERT_EQ(mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"}).status, 0);
    r = underScript("$M container exec -t web /bin/sh -c 'printf \"a\\nb\\n\"'");
    EXPECT_EQ(r.out, "a\r\nb\r\n");
}

TEST_F(ContainerCli, TtyRestoresTheUsersTerminal) {
    if (::access("/usr/bin/script", X_OK) != 0)
        GTEST_SKIP() << "needs script(1) from util-linux for a pty";
    ASSERT_EQ(mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"}).status, 0);
    // Raw while it runs (input too with -i), as before after it exits, is killed by a
    // signal it forwards (TERM) or by one it does not (ALRM), or fails to start.
    auto during = [&](const std::string &flags, const std::string &signal) {
        const std::string modes =
            "stty -a | tr ' ' '\\n' | grep -x -e '-\\?opost' -e '-\\?icanon' | tr '\\n' ' '; ";
        std::string start = "$M container exec " + flags + " web /bin/sleep 5 </dev/tty & ";
        std::string stop = "kill -" + signal + " $pid; wait $pid; echo status=$?; ";
        return underScript("before=$(stty -g); " + start + "pid=$!; sleep 1; " + modes + stop +
                           "test \"$(stty -g)\" = \"$before\" && echo restored")
            .out;
    };
    EXPECT_EQ(during("-it", "TERM"), "-opost -icanon status=143\r\nrestored\r\n");
    std::string alarm = during("-it", "ALRM");
    EXPECT_EQ(alarm.rfind("-opost -icanon ", 0), 0u) << alarm; // then bash's "Alarm clock"
    EXPECT_NE(alarm.find("status=142\r\n"), std::string::npos) << alarm;
    EXPECT_NE(alarm.find("restored\r\n"), std::string::npos) << alarm;
    // Without -i the input side stays cooked, so ^C still reaches mobileops.
    EXPECT_EQ(during("-t", "TERM"), "-opost icanon status=143\r\nrestored\r\n");
    Result r = underScript("before=$(stty -g); $M container exec -it web /bin/nosuch; "
                           "test \"$(stty -g)\" = \"$before\" && echo restored");
    EXPECT_NE(r.out.find("restored\r\n"), std::string::npos) << r.out;
}

TEST_F(ContainerCli, TtyHasTheUsersWindowSize) {
    if (::access("/usr/bin/script", X_OK) != 0)
        GTEST_SKIP() << "needs script(1) from util-linux for a pty";
    Result r = underScript("stty rows 30 cols 100; $M container run --rm -t " + _rootfs +
                           " /bin/stty size");
    EXPECT_EQ(r.out, "30 100\r\n");
    ASSERT_EQ(mo({"container", "boot", "web", _rootfs, "/bin/sleep", "1000"}).status, 0);
    r = underScript("stty rows 31 cols 101; $M container exec -t web /bin/stty size");
    EXPECT_EQ(r.out, "31 101\r\n");
    // A resize while it runs (SIGWINCH) reaches the container's pty.
    r = underScript("stty rows 30 cols 100; "
                    "$M container exec -it web /bin/sh -c 'sleep 1; stty size' </dev/tty & "
                    "pid=$!; sleep 0.3; stty rows 40 cols 120; wait $pid");
    EXPECT_EQ(r.out, "40 120\r\n");
}

TEST_F(ContainerCli, LimitsStatsPauseUpdateAndOom) {
    if (mo({"system", "doctor"}).out.find("ok   cgroup") == std::string::npos)
        GTEST_SKIP() << "no usable cgroup plugin here";
    ASSERT_EQ(mo({"container", "boot", "busy", "--memory", "64Mi", "--pids-limit", "50", _rootfs,
                  "/bin/sh", "-c", "while :; do :; done"})
                  .status,
              0);
    auto stats =
        nlohmann::json::parse(mo({"container", "stats", "--no-stream", "--json", "busy"}).out);
    ASSERT_EQ(stats.size(), 1u);
    EXPECT_EQ(stats[0]["memory_limit"], 64 * 1024 * 1024);
    EXPECT_GT(stats[0]["memory_usage"].get<double>(), 0);
    EXPECT_GT(stats[0]["cpu_percent"].get<double>(), 10) << stats.dump();
    EXPECT_EQ(stats[0]["pids"], 1);
    ASSERT_EQ(mo({"container", "pause", "busy"}).status, 0);
    EXPECT_EQ(nlohmann::json::parse(mo({"container", "inspect", "busy"}).out)["status"], "paused");
    stats = nlohmann::json::parse(mo({"container", "stats", "--no-stream", "--json", "busy"}).out);
    EXPECT_LT(stats[0]["cpu_percent"].get<double>(), 5) << "frozen: no CPU";
    ASSERT_EQ(mo({"container", "resume", "busy"}).status, 0);
    ASSERT_EQ(mo({"container", "update", "busy", "--memory", "128Mi"}).status, 0);
    stats = nlohmann::json::parse(mo({"container", "stats", "--no-stream", "--json", "busy"}).out);
    EXPECT_EQ(stats[0]["memory_limit"], 128 * 1024 * 1024);
    EXPECT_EQ(mo({"container", "update", "busy"}).status, 1); // nothing to change
    EXPECT_EQ(mo({"container", "delete", "--force", "busy"}).status, 0);

    // past --memory 32Mi: killed by the OOM killer, reported as such
    Result r = mo({"container", "run", "--name", "hog", "--memory", "32Mi", _rootfs, "/bin/sh",
                   "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"});
    EXPECT_EQ(r.status, 137) << r.out << r.err;
    auto state = nlohmann::json::parse(mo({"container", "inspect", "hog"}).out);
    EXPECT_EQ(state["exit_code"], 137);
    EXPECT_EQ(state.value("oom_killed", false), true) << state.dump();
    EXPECT_NE(mo({"container", "list", "--all"}).out.find("137 (OOMKilled)"), std::string::npos);
}

TEST_F(ContainerCli, InspectShowsRequestedAgainstAppliedAndIgnoreUnsupported) {
    if (mo({"system", "doctor"}).out.find("ok   cgroup") == std::string::npos)
        GTEST_SKIP() << "no usable cgroup plugin here";
    // swappiness exists on cgroup v1 only: applied here, refused on a v2 host unless asked
    bool v2Memory = std::filesystem::exists("/sys/fs/cgroup/cgroup.controllers") &&
                    !std::filesystem::exists("/sys/fs/cgroup/memory");
    std::vector<std::string> boot = {"container", "boot",   "lim",   "--memory",
                                     "67108964",  "--cpus", "1.5",   "--memory-swappiness",
                                     "10",        _rootfs,  "sleep", "100"};
    if (v2Memory) {
        Result r = mo(boot);
        EXPECT_EQ(r.status, 1);
        EXPECT_NE(r.err.find("swappiness"), std::string::npos) << r.err;
        EXPECT_EQ(containerCgroups(), 0u);
        boot.insert(boot.begin() + 3, "--ignore-unsupported");
        r = mo(boot);
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.err.find("resources.memorySwappiness not applied"), std::string::npos) << r.err;
    } else {
        ASSERT_EQ(mo(boot).status, 0);
    }
    auto state = nlohmann::json::parse(mo({"container", "inspect", "lim"}).out);
    std::map<std::string, nlohmann::json> by;
    for (const auto &f : state["resources"]["fields"]) by[f["field"]] = f;
    ASSERT_EQ(by.size(), 3u) << state["resources"].dump(2);
    EXPECT_EQ(by["limits.cpu"]["applied"], 1500);
    EXPECT_EQ(by["limits.memory"]["requested"], 67108964);
    EXPECT_EQ(by["limits.memory"]["applied"], 67108864);
    EXPECT_NE(by["limits.memory"].value("note", "").find("whole pages"), std::string::npos);
    if (v2Memory) {
        EXPECT_TRUE(by["memorySwappiness"]["applied"].is_null());
        EXPECT_NE(by["memorySwappiness"].value("note", "").find("not applied"), std::string::npos);
    } else {
        EXPECT_EQ(by["memorySwappiness"]["applied"], 10);
    }
    ASSERT_EQ(
        mo({"container", "update", "lim", "--memory", "128Mi", "--ignore-unsupported"}).status, 0);
    state = nlohmann::json::parse(mo({"container", "inspect", "lim"}).out);
    for (const auto &f : state["resources"]["fields"]) {
        if (f["field"] != "limits.memory") continue;
        EXPECT_EQ(f["requested"], 128 * 1024 * 1024);
        EXPECT_EQ(f["applied"], 128 * 1024 * 1024);
    }
    EXPECT_EQ(mo({"container", "delete", "--force", "lim"}).status, 0);
    EXPECT_EQ(containerCgroups(), 0u);
}

} // namespace
