// runc's process model through the runtime service (spec `oci`, exec's `detach`): the
// init created up to its gate, started through it, reaped by the caller (this test
// process plays conmon's part), stdio inherited or a pty sent to a console socket, pid
// files, kill and delete in created, and creates that fail leaving nothing. Needs root.
#include "RuntimeFixture.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <future>
#include <optional>

namespace {

// Puts `in`, `out`, `err` on this process's fds 0, 1, 2 (what a created container
// inherits) until destroyed.
class OwnStdio {
public:
    OwnStdio(int in, int out, int err) {
        int src[3] = {in, out, err};
        for (int i = 0; i < 3; ++i) {
            _saved[i] = ::fcntl(i, F_DUPFD_CLOEXEC, 10);
            ::dup2(src[i], i);
        }
    }
    ~OwnStdio() {
        for (int i = 0; i < 3; ++i) {
            ::dup2(_saved[i], i);
            ::close(_saved[i]);
        }
    }

private:
    int _saved[3];
};

std::string exeOf(pid_t pid) {
    char buf[4096];
    ssize_t n = ::readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// waitpid for our child `pid`: its exit code, 128+N for signal N, -1 on error.
int reap(pid_t pid) {
    int st = 0;
    pid_t r;
    do r = ::waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid) return -1;
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
}

// A console socket as conmon listens on it: one connection, one fd and the pty's name.
class ConsoleSocket {
public:
    explicit ConsoleSocket(const std::string &path) : _path(path) {
        _fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un addr = {};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        if (::bind(_fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0 ||
            ::listen(_fd, 1) < 0)
            ADD_FAILURE() << "console socket " << path << ": " << std::strerror(errno);
        _received = std::async(std::launch::async, [this] { return receive(); });
    }
    ~ConsoleSocket() {
        ::shutdown(_fd, SHUT_RDWR);
        ::close(_fd);
        ::unlink(_path.c_str());
        if (_received.valid()) {
            auto got = _received.get();
            if (got.first >= 0) ::close(got.first);
        }
    }
    // The received fd (owned by the caller) and name.
    std::pair<int, std::string> get() { return _received.get(); }

private:
    std::pair<int, std::string> receive() {
        struct pollfd p = {_fd, POLLIN, 0};
        if (::poll(&p, 1, 60000) != 1) return {-1, "(no connection)"};
        int conn = ::accept4(_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) return {-1, "(accept failed)"};
        char name[4096];
        struct iovec iov = {name, sizeof name};
        alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        struct msghdr msg = {};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
        ::close(conn);
        int fd = -1;
        for (auto *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
        return {fd, n > 0 ? std::string(name, static_cast<size_t>(n)) : std::string()};
    }

    std::string _path;
    int _fd = -1;
    std::future<std::pair<int, std::string>> _received;
};

// Read `fd` until `want` appeared or it ends (60 s at most without data).
std::string readUntil(int fd, const std::string &want) {
    std::string out;
    char buf[4096];
    while (out.find(want) == std::string::npos) {
        struct pollfd p = {fd, POLLIN, 0};
        if (::poll(&p, 1, 60000) != 1) break;
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out;
}

class OciTest : public RuntimeTest {
protected:
    void TearDown() override {
        RuntimeTest::TearDown();
        // The inits this process created are its children: reap what a test left.
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
    }
    json ociSpec(const std::string &name, std::vector<std::string> args,
                 json oci = json::object()) {
        json s = spec(name, std::move(args));
        s["oci"] = std::move(oci);
        return s;
    }
    std::string pidFile() { return _dir + "/init.pid"; }
    // Nothing of a container is left: record, run directory, children.
    void expectNothingLeft() {
        EXPECT_TRUE(_rt->list(true).empty());
        std::error_code ec;
        EXPECT_TRUE(std::filesystem::directory_iterator(_dir + "/root/containers", ec) ==
                    std::filesystem::directory_iterator())
            << "a container directory was left behind";
        EXPECT_TRUE(noChildren()) << "a process was left behind";
        EXPECT_FALSE(std::filesystem::exists(pidFile())) << "a pid file was left behind";
    }
};

} // namespace

TEST_F(OciTest, CreateStopsBeforeTheExecAndStartRunsTheCommand) {
    Capture out, err;
    json created;
    {
        OwnStdio io(0, out.fd, err.fd);
        created =
            _rt->create(ociSpec("oci1", {"/bin/sh", "-c", "echo hello; echo oops >&2; exit 7"},
                                {{"pidFile", pidFile()}, {"bundle", _dir}}));
    }
    remember(created);
    EXPECT_EQ(created["status"], "created");
    pid_t pid = created["pid"];
    ASSERT_GT(pid, 0);
    EXPECT_EQ(slurp(pidFile()), std::to_string(pid));
    auto info = processInfo(pid);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->ppid, ::getpid()) << "the caller of create is the init's parent";
    EXPECT_EQ(exeOf(pid), exeOf(::getpid())) << "the init must not exec before start";
    // While it waits it holds none of our files: stdio, the gate, the container entry.
    std::vector<std::string> fds;
    for (auto &e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        fds.push_back(e.path().filename().string() + " -> " +
                      std::filesystem::read_symlink(e.path()).string());
    EXPECT_LE(fds.size(), 5u) << ::testing::PrintToString(fds);
    EXPECT_TRUE(std::filesystem::exists(containerDir(created["id"]) + "/exec.fifo"));
    json oci = _rt->state("oci1")["ociState"];
    EXPECT_EQ(oci, json({{"ociVersion", "1.0.2"},
                         {"id", "oci1"},
                         {"status", "created"},
                         {"pid", pid},
                         {"bundle", _dir},
                         {"annotations", json::object()}}));
    EXPECT_EQ(out.text(), "");

    _rt->start("oci1");
    EXPECT_EQ(reap(pid), 7);
    EXPECT_EQ(out.text(), "hello\n");
    EXPECT_EQ(err.text(), "oops\n");
    json st = _rt->state("oci1");
    EXPECT_EQ(st["status"], "stopped");
    EXPECT_FALSE(st.contains("exit_code")) << st.dump();
    EXPECT_FALSE(std::filesystem::exists(containerDir(created["id"]) + "/exec.fifo"));
    EXPECT_NE(errorOf([&] { _rt->start("oci1"); }).find("only a created container"),
              std::string::npos);
    _rt->remove("oci1", false);
    ::unlink(pidFile().c_str());
    expectNothingLeft();
}

TEST_F(OciTest, StartedContainerRunsUntilKilled) {
    json created = _rt->create(ociSpec("oci2", {"/bin/sleep", "100"}));
    remember(created);
    pid_t pid = created["pid"];
    _rt->start("oci2");
    json st = _rt->state("oci2");
    EXPECT_EQ(st["status"], "running");
    EXPECT_TRUE(st.contains("started"));
    // start returns once the init passed the gate; its exec follows at once.
    for (int i = 0; i < 1000 && exeOf(pid) == exeOf(::getpid()); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_NE(exeOf(pid), exeOf(::getpid()));
    EXPECT_NE(errorOf([&] { _rt->remove("oci2", false); }).find("is running"), std::string::npos);
    _rt->kill("oci2", SIGKILL, false);
    EXPECT_EQ(reap(pid), 128 + SIGKILL);
    EXPECT_EQ(_rt->state("oci2")["status"], "stopped");
    _rt->remove("oci2", false);
    expectNothingLeft();
}

TEST_F(OciTest, KillInCreatedEndsTheInit) {
    json created = _rt->create(ociSpec("oci3", {"/bin/true"}));
    remember(created);
    pid_t pid = created["pid"];
    _rt->kill("oci3", SIGTERM, false);
    EXPECT_EQ(reap(pid), 128 + SIGTERM);
    EXPECT_EQ(_rt->state("oci3")["status"], "stopped");
    EXPECT_NE(errorOf([&] { _rt->start("oci3"); }).find("only a created container"),
              std::string::npos);
    _rt->remove("oci3", false);
    expectNothingLeft();
}

TEST_F(OciTest, DeleteOfACreatedContainerKillsItAndReleasesEverything) {
    json created = _rt->create(ociSpec("oci4", {"/bin/true"}, {{"pidFile", pidFile()}}));
    remember(created);
    pid_t pid = created["pid"];
    std::string cgroup = host().get(kContainerKind, created["id"])->value("cgroup", "");
    _rt->remove("oci4", false);
    EXPECT_EQ(reap(pid), 128 + SIGKILL);
    for (const char *root : {"/sys/fs/cgroup/memory/", "/sys/fs/cgroup/pids/",
                             "/sys/fs/cgroup/unified/", "/sys/fs/cgroup/"}) {
        if (cgroup.empty()) break;
        EXPECT_FALSE(std::filesystem::exists(root + cgroup)) << root << cgroup;
    }
    ::unlink(pidFile().c_str());
    expectNothingLeft();
}

TEST_F(OciTest, ConsoleSocketReceivesAWorkingPtyMaster) {
    ConsoleSocket console(_dir + "/console.sock");
    // The pty comes from the container's own devpts, as with runc: `tty` names
    // /dev/pts/0 and /dev/console is the same terminal.
    json s = ociSpec("oci5",
                     {"/bin/sh", "-c",
                      "read x; echo got-$x; test $(stat -c %t:%T /dev/console) = "
                      "$(stat -L -c %t:%T /proc/self/fd/0) && echo console-same; tty"},
                     {{"consoleSocket", _dir + "/console.sock"}});
    s["process"]["terminal"] = true;
    json created = _rt->create(s);
    remember(created);
    auto [master, name] = console.get();
    ASSERT_GE(master, 0) << name;
    EXPECT_EQ(name, "/dev/pts/0");
    EXPECT_TRUE(::isatty(master));
    _rt->start("oci5");
    ASSERT_EQ(::write(master, "abc\n", 4), 4);
    std::string text = readUntil(master, "/dev/pts/0");
    EXPECT_NE(text.find("got-abc"), std::string::npos) << text;
    EXPECT_NE(text.find("console-same"), std::string::npos) << text;
    EXPECT_NE(text.find("/dev/pts/0"), std::string::npos) << text;
    EXPECT_EQ(reap(created["pid"]), 0);
    ::close(master);
    _rt->remove("oci5", false);
    expectNothingLeft();
}

TEST_F(OciTest, FailedCreatesLeaveNothingBehind) {
    // The command is looked up before the gate, as runc does.
    std::string e = errorOf([&] {
        _rt->create(ociSpec("bad1", {"/no/such/command"}, {{"pidFile", pidFile()}}));
    });
    EXPECT_NE(e.find("/no/such/command"), std::string::npos) << e;
    expectNothingLeft();
    e = errorOf([&] { _rt->create(ociSpec("bad2", {"no-such-command"})); });
    EXPECT_NE(e.find("not found in PATH"), std::string::npos) << e;
    expectNothingLeft();
    // Nobody listens on the console socket: the init is killed, the pid file not written.
    json s = ociSpec("bad3", {"/bin/true"},
                     {{"consoleSocket", _dir + "/nobody.sock"}, {"pidFile", pidFile()}});
    s["process"]["terminal"] = true;
    e = errorOf([&] { _rt->create(s); });
    EXPECT_NE(e.find("console socket"), std::string::npos) << e;
    expectNothingLeft();
    // The pid file's directory is missing.
    e = errorOf([&] {
        _rt->create(ociSpec("bad4", {"/bin/true"}, {{"pidFile", _dir + "/no/dir/pid"}}));
    });
    EXPECT_NE(e.find("pid file"), std::string::npos) << e;
    expectNothingLeft();
    // A cwd that does not exist fails in the init, before the gate.
    json c = ociSpec("bad5", {"/bin/true"});
    c["process"]["cwd"] = "/no/such/dir";
    e = errorOf([&] { _rt->create(c); });
    EXPECT_NE(e.find("/no/such/dir"), std::string::npos) << e;
    expectNothingLeft();
}

TEST_F(OciTest, SpecErrorsNameTheKey) {
    EXPECT_EQ(errorOf([&] {
                  _rt->create(ociSpec("v1", {"/bin/true"}, {{"pidFile", "x.pid"}}));
              }),
              "oci.pidFile: `x.pid` is not an absolute path");
    EXPECT_EQ(errorOf([&] {
                  _rt->create(ociSpec("v2", {"/bin/true"}, {{"pidFile", "/tmp/../etc/x"}}));
              }),
              "oci.pidFile: `/tmp/../etc/x` contains `..`");
    json t = ociSpec("v3", {"/bin/true"});
    t["process"]["terminal"] = true;
    EXPECT_NE(errorOf([&] { _rt->create(t); }).find("oci.consoleSocket"), std::string::npos);
    EXPECT_NE(errorOf([&] {
                  _rt->create(ociSpec("v4", {"/bin/true"}, {{"consoleSocket", "/tmp/c.sock"}}));
              }).find("without process.terminal"),
              std::string::npos);
    EXPECT_EQ(errorOf([&] { _rt->create(ociSpec("v5", {"/bin/true"}, json::array())); }),
              "oci: expected an object");
    expectNothingLeft();
}

TEST_F(OciTest, DetachedExecReturnsThePidAndLeavesTheProcessToTheCaller) {
    json created = _rt->create(ociSpec("oci6", {"/bin/sleep", "100"}));
    remember(created);
    _rt->start("oci6");
    Capture out;
    int pid;
    {
        OwnStdio io(0, out.fd, out.fd);
        pid = _rt->exec("oci6",
                        {{"args", {"/bin/sh", "-c", "echo from-exec; exit 5"}},
                         {"detach", true},
                         {"pidFile", pidFile()}},
                        {});
    }
    ASSERT_GT(pid, 0);
    EXPECT_EQ(slurp(pidFile()), std::to_string(pid));
    EXPECT_EQ(reap(pid), 5);
    EXPECT_EQ(out.text(), "from-exec\n");
    ::unlink(pidFile().c_str());

    // With a terminal: the pty master arrives on the console socket.
    ConsoleSocket console(_dir + "/exec.sock");
    pid = _rt->exec("oci6",
                    {{"args", {"/bin/sh", "-c", "echo tty-$(tty)"}},
                     {"terminal", true},
                     {"detach", true},
                     {"consoleSocket", _dir + "/exec.sock"}},
                    {});
    auto [master, name] = console.get();
    ASSERT_GE(master, 0) << name;
    std::string text = readUntil(master, "tty-/dev/pts/");
    EXPECT_NE(text.find("tty-/dev/pts/"), std::string::npos) << text;
    EXPECT_EQ(reap(pid), 0);
    ::close(master);

    EXPECT_NE(errorOf([&] {
                  _rt->exec("oci6", {{"args", {"/bin/true"}}, {"pidFile", pidFile()}}, {});
              }).find("only with process.detach"),
              std::string::npos);
    _rt->remove("oci6", true);
    EXPECT_EQ(reap(created["pid"]), 128 + SIGKILL);
    expectNothingLeft();
}

// Spec keys of runc's config.json that any container may have.
TEST_F(OciTest, CgroupsPathPlacesTheContainer) {
    if (!hasCgroupService()) GTEST_SKIP() << "no cgroup plugin in the build";
    const std::string leaf = "mobileops-oci-test-" + std::to_string(::getpid());
    json s = ociSpec("cg1", {"/bin/true"});
    s["cgroupsPath"] = "/" + leaf;
    json created = _rt->create(s);
    remember(created);
    pid_t pid = created["pid"];
    EXPECT_EQ(host().get(kContainerKind, created["id"])->value("cgroup", ""), leaf);
    std::string cgroups = slurp("/proc/" + std::to_string(pid) + "/cgroup");
    EXPECT_NE(cgroups.find("/" + leaf + "\n"), std::string::npos) << cgroups;
    // A cgroup holding someone's processes is not a new container's.
    json again = ociSpec("cg2", {"/bin/true"});
    again["cgroupsPath"] = leaf;
    EXPECT_NE(errorOf([&] { _rt->create(again); }).find("already holds processes"),
              std::string::npos);
    EXPECT_EQ(_rt->list(true).size(), 1u);
    _rt->remove("cg1", false);
    EXPECT_EQ(reap(pid), 128 + SIGKILL);
    for (const char *root : {"/sys/fs/cgroup/memory/", "/sys/fs/cgroup/pids/",
                             "/sys/fs/cgroup/unified/", "/sys/fs/cgroup/"})
        EXPECT_FALSE(std::filesystem::exists(root + leaf)) << root << leaf;
    expectNothingLeft();
}

TEST_F(OciTest, CgroupsPathErrorsNameTheForm) {
    json s = spec("cg3", {"/bin/true"});
    s["cgroupsPath"] = "system.slice:mobileops:cg3";
    EXPECT_NE(errorOf([&] { _rt->create(s); }).find("the systemd form"), std::string::npos);
    s["cgroupsPath"] = "/a/../../etc";
    EXPECT_NE(errorOf([&] { _rt->create(s); }).find("`.` and `..` are not allowed"),
              std::string::npos);
    s["cgroupsPath"] = "/";
    EXPECT_NE(errorOf([&] { _rt->create(s); }).find("root cgroup"), std::string::npos);
    expectNothingLeft();
}

TEST_F(OciTest, MaskedAndReadonlyPathsReplaceTheDefaults) {
    Capture out;
    Stdio io;
    io.out = out.fd;
    io.err = out.fd;
    json s = spec("mp1", {"/bin/sh", "-c",
                          "wc -c < /etc/passwd; touch /tmp/x 2>/dev/null || echo tmp-ro; "
                          "test -c /proc/kcore || echo kcore-unmasked"});
    s["maskedPaths"] = {"/etc/passwd"};
    s["readonlyPaths"] = {"/tmp"};
    EXPECT_EQ(_rt->run(s, io, true), 0);
    EXPECT_EQ(out.text(), "0\ntmp-ro\nkcore-unmasked\n");
    json bad = spec("mp2", {"/bin/true"});
    bad["maskedPaths"] = {"proc/kcore"};
    EXPECT_NE(errorOf([&] { _rt->create(bad); }).find("maskedPaths: `proc/kcore`"),
              std::string::npos);
    bad["maskedPaths"] = {"/proc/../etc"};
    EXPECT_NE(errorOf([&] { _rt->create(bad); }).find("without `..`"), std::string::npos);
    expectNothingLeft();
}

TEST_F(OciTest, OomScoreAdjIsSet) {
    Capture out;
    Stdio io;
    io.out = out.fd;
    json s = spec("oom1", {"/bin/cat", "/proc/self/oom_score_adj"});
    s["process"]["oomScoreAdj"] = 500;
    EXPECT_EQ(_rt->run(s, io, true), 0);
    EXPECT_EQ(out.text(), "500\n");
    s["process"]["oomScoreAdj"] = 1001;
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "process.oomScoreAdj: expected an integer from -1000 to 1000");
    expectNothingLeft();
}

TEST_F(OciTest, SysctlsAreWrittenInTheContainersNamespaces) {
    Capture out;
    Stdio io;
    io.out = out.fd;
    io.err = out.fd;
    json s = spec("sc1", {"/bin/sh", "-c",
                          "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward "
                          "/proc/sys/kernel/domainname"});
    s["sysctl"] = {{"kernel.shmmax", "12345678"},
                   {"net.ipv4.ip_forward", "1"},
                   {"kernel.domainname", "example.test"}};
    EXPECT_EQ(_rt->run(s, io, true), 0);
    EXPECT_EQ(out.text(), "12345678\n1\nexample.test\n");
    EXPECT_NE(slurp("/proc/sys/kernel/domainname"), "example.test\n") << "the host's changed";
    auto refused = [&](json sysctl) {
        json b = spec("sc2", {"/bin/true"});
        b["sysctl"] = std::move(sysctl);
        return errorOf([&] { _rt->create(b); });
    };
    EXPECT_EQ(refused({{"kernel.panic", "1"}}),
              "sysctl `kernel.panic`: not a namespaced sysctl: it would change the host");
    EXPECT_NE(refused({{"net/../../kernel/panic", "1"}}).find("not a sysctl name"),
              std::string::npos);
    EXPECT_NE(refused({{"net..ipv4", "1"}}).find("not a sysctl name"), std::string::npos);
    json host = spec("sc3", {"/bin/true"});
    host["network"] = {{"mode", "host"}};
    host["sysctl"] = {{"net.ipv4.ip_forward", "1"}};
    EXPECT_NE(errorOf([&] { _rt->create(host); }).find("own network namespace"), std::string::npos);
    expectNothingLeft();
}

TEST_F(OciTest, DevicesAreMadeUnderDev) {
    Capture out;
    Stdio io;
    io.out = out.fd;
    io.err = out.fd;
    json s = spec("dv1", {"/bin/sh", "-c",
                          "echo x > /dev/mynull && stat -c '%a %u %g %t %T' /dev/mynull; "
                          "test -p /dev/sub/fifo && echo fifo"});
    s["devices"] = {{{"path", "/dev/mynull"},
                     {"type", "c"},
                     {"major", 1},
                     {"minor", 3},
                     {"fileMode", 0600},
                     {"uid", 7},
                     {"gid", 8}},
                    {{"path", "/dev/sub/fifo"}, {"type", "p"}}};
    EXPECT_EQ(_rt->run(s, io, true), 0);
    EXPECT_EQ(out.text(), "600 7 8 1 3\nfifo\n");
    auto refused = [&](json device) {
        json b = spec("dv2", {"/bin/true"});
        b["devices"] = json::array({std::move(device)});
        return errorOf([&] { _rt->create(b); });
    };
    EXPECT_NE(refused({{"path", "/dev/../etc/x"}, {"type", "c"}}).find("without `..`"),
              std::string::npos);
    EXPECT_NE(refused({{"path", "/etc/x"}, {"type", "c"}}).find("not a path under /dev"),
              std::string::npos);
    EXPECT_NE(refused({{"path", "/dev/x"}, {"type", "x"}}).find("devices[0].type"),
              std::string::npos);
    expectNothingLeft();
}

TEST_F(OciTest, ExplicitCapabilitySetsAreExact) {
    Capture out;
    Stdio io;
    io.out = out.fd;
    io.err = out.fd;
    json s = spec("cap1", {"/bin/sh", "-c", "grep ^Cap /proc/self/status"});
    s["process"]["user"] = {{"uid", 1000}, {"gid", 1000}};
    s["security"] = {{"capabilities",
                      {{"bounding", {"CAP_CHOWN", "CAP_KILL"}},
                       {"effective", {"CAP_CHOWN"}},
                       {"permitted", {"CAP_CHOWN"}},
                       {"inheritable", {"CAP_CHOWN"}},
                       {"ambient", {"CAP_CHOWN"}}}}};
    EXPECT_EQ(_rt->run(s, io, true), 0);
    EXPECT_EQ(out.text(), "CapInh:\t0000000000000001\nCapPrm:\t0000000000000001\n"
                          "CapEff:\t0000000000000001\nCapBnd:\t0000000000000021\n"
                          "CapAmb:\t0000000000000001\n");
    auto refused = [&](json caps) {
        json b = spec("cap2", {"/bin/true"});
        b["security"] = {{"capabilities", std::move(caps)}};
        return errorOf([&] { _rt->create(b); });
    };
    EXPECT_NE(refused({{"bounding", {"CAP_NOPE"}}}).find("unknown capability"), std::string::npos);
    EXPECT_NE(
        refused(
            {{"bounding", {"CAP_KILL"}}, {"permitted", {"CAP_KILL"}}, {"effective", {"CAP_CHOWN"}}})
            .find("effective: not in permitted"),
        std::string::npos);
    EXPECT_NE(refused({{"bounding", {"CAP_KILL"}}, {"add", {"CAP_CHOWN"}}}).find("not both"),
              std::string::npos);
    if (!(allCapabilities() & (uint64_t(1) << 24))) { // CAP_SYS_RESOURCE, lacking on some hosts
        EXPECT_NE(refused({{"bounding", {"CAP_SYS_RESOURCE"}}}).find("not held by this runtime"),
                  std::string::npos);
    }
    expectNothingLeft();
}

namespace {

json shellHook(const std::string &script, std::optional<int> timeout = std::nullopt) {
    json h = {{"path", "/bin/sh"},
              {"args", {"sh", "-c", script}},
              {"env", {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}};
    if (timeout) h["timeout"] = *timeout;
    return h;
}

} // namespace

TEST_F(OciTest, HooksRunWhereAndWhenTheOciSpecSays) {
    const std::string d = _dir;
    const std::string order = "/tmp/hook-order-" + std::to_string(::getpid());
    json s = ociSpec("hk1", {"/bin/sh", "-c", "echo proc >> " + order}, {{"bundle", _dir}});
    s["annotations"] = {{"k", "v"}};
    s["hooks"] = {{"prestart", {shellHook("cat > " + d + "/prestart.json")}},
                  {"createRuntime",
                   {shellHook("cat > " + d +
                              "/createRuntime.json; readlink "
                              "/proc/self/ns/uts > " +
                              d + "/cr-uts")}},
                  {"createContainer",
                   {shellHook("cat > " + d +
                              "/createContainer.json; readlink "
                              "/proc/self/ns/uts > " +
                              d + "/cc-uts; hostname > " + d + "/cc-hostname")}},
                  {"startContainer",
                   {shellHook("cat > /tmp/sc-" + std::to_string(::getpid()) +
                              ".json; echo hook > " + order)}},
                  {"poststart", {shellHook("cat > " + d + "/poststart.json")}},
                  {"poststop", {shellHook("cat > " + d + "/poststop.json")}}};
    json created = _rt->create(s);
    remember(created);
    pid_t pid = created["pid"];
    json pre = json::parse(slurp(d + "/prestart.json"));
    EXPECT_EQ(pre["id"], "hk1");
    EXPECT_EQ(pre["status"], "creating");
    EXPECT_EQ(pre["pid"], pid);
    EXPECT_EQ(pre["bundle"], _dir);
    EXPECT_EQ(pre["annotations"], json({{"k", "v"}}));
    EXPECT_TRUE(pre.contains("ociVersion"));
    EXPECT_EQ(json::parse(slurp(d + "/createRuntime.json"))["pid"], pid);
    EXPECT_EQ(json::parse(slurp(d + "/createContainer.json"))["pid"], pid);
    char own[256] = {};
    ASSERT_GT(::readlink("/proc/self/ns/uts", own, sizeof own - 1), 0);
    EXPECT_EQ(slurp(d + "/cr-uts"), std::string(own) + "\n") << "createRuntime: our namespaces";
    EXPECT_NE(slurp(d + "/cc-uts"), std::string(own) + "\n") << "createContainer: the container's";
    EXPECT_EQ(slurp(d + "/cc-hostname"), "hk1\n");
    EXPECT_FALSE(std::filesystem::exists(d + "/poststart.json"));
    const std::string inRoot = rootfsPath() + order;
    EXPECT_FALSE(std::filesystem::exists(inRoot)) << "startContainer ran before start";

    _rt->start("hk1");
    EXPECT_EQ(reap(pid), 0);
    EXPECT_EQ(slurp(inRoot), "hook\nproc\n");
    const std::string sc = rootfsPath() + "/tmp/sc-" + std::to_string(::getpid()) + ".json";
    EXPECT_EQ(json::parse(slurp(sc))["pid"], pid);
    ::unlink(inRoot.c_str());
    ::unlink(sc.c_str());
    EXPECT_EQ(json::parse(slurp(d + "/poststart.json"))["status"], "running");
    EXPECT_FALSE(std::filesystem::exists(d + "/poststop.json"));
    _rt->remove("hk1", false);
    json post = json::parse(slurp(d + "/poststop.json"));
    EXPECT_EQ(post["status"], "stopped");
    EXPECT_FALSE(post.contains("pid"));
    expectNothingLeft();
}

TEST_F(OciTest, FailingCreateHooksFailCreateAndLeaveNothing) {
    for (const char *kind : {"prestart", "createRuntime", "createContainer"}) {
        json s = ociSpec("hk2", {"/bin/true"}, {{"pidFile", pidFile()}});
        s["hooks"] = {{kind, {shellHook("echo boom; exit 3")}}};
        std::string e = errorOf([&] { _rt->create(s); });
        EXPECT_EQ(e, std::string(kind) + " hook 0 `/bin/sh` exited with status 3: boom") << kind;
        expectNothingLeft();
    }
    json s = ociSpec("hk3", {"/bin/true"});
    s["hooks"] = {{"createRuntime", {shellHook("exec sleep 100", 1)}}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "createRuntime hook 0 `/bin/sh` did not finish within 1 s and was killed");
    expectNothingLeft();
    // A failing poststart or poststop only warns.
    json w = ociSpec("hk4", {"/bin/true"});
    w["hooks"] = {{"poststart", {shellHook("exit 1")}}, {"poststop", {shellHook("exit 1")}}};
    json created = _rt->create(w);
    _rt->start("hk4");
    EXPECT_EQ(reap(created["pid"]), 0);
    _rt->remove("hk4", false);
    expectNothingLeft();
}

TEST_F(OciTest, HookSpecErrors) {
    json s = spec("hk5", {"/bin/true"});
    s["hooks"] = {{"prestart", {shellHook("true")}}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }), "hooks: only with `oci` (runc's process model)");
    s["oci"] = json::object();
    s["hooks"] = {{"prestart", {{{"path", "sh"}}}}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "hooks.prestart[0].path: expected an absolute path");
    s["hooks"] = {{"prestop", json::array()}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }), "hooks.prestop: unknown hook kind");
    s["hooks"] = {{"poststop", {{{"path", "/bin/true"}, {"timeout", 0}}}}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "hooks.poststop[0].timeout: expected seconds from 1 to 86400");
    expectNothingLeft();
}

TEST_F(OciTest, NamespacePathsJoinAnotherContainersNamespaces) {
    json a = _rt->create(ociSpec("ns1", {"/bin/sleep", "100"}));
    remember(a);
    pid_t apid = a["pid"];
    _rt->start("ns1");
    const std::string base = "/proc/" + std::to_string(apid) + "/ns/";
    auto link = [](const std::string &p) {
        char buf[256] = {};
        ssize_t n = ::readlink(p.c_str(), buf, sizeof buf - 1);
        return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?");
    };
    Capture out;
    Stdio io;
    io.out = out.fd;
    io.err = out.fd;
    json b = spec("ns2", {"/bin/sh", "-c",
                          "for n in net uts ipc pid; do readlink /proc/self/ns/$n; done; "
                          "hostname; tr '\\0' ' ' < /proc/1/cmdline"});
    b["namespacePaths"] = {{"network", base + "net"},
                           {"uts", base + "uts"},
                           {"ipc", base + "ipc"},
                           {"pid", base + "pid"}};
    EXPECT_EQ(_rt->run(b, io, true), 0);
    EXPECT_EQ(out.text(), link(base + "net") + "\n" + link(base + "uts") + "\n" +
                              link(base + "ipc") + "\n" + link(base + "pid") + "\nns1\n" +
                              "/bin/sleep 100 ");
    EXPECT_NE(link(base + "net"), link("/proc/self/ns/net"));

    auto refused = [&](json paths) {
        json c = spec("ns3", {"/bin/true"});
        c["namespacePaths"] = std::move(paths);
        return errorOf([&] { _rt->create(c); });
    };
    EXPECT_EQ(refused({{"network", base + "uts"}}),
              "namespacePaths.network: `" + base + "uts` is a uts namespace, not net");
    EXPECT_EQ(refused({{"ipc", "/etc/passwd"}}),
              "namespacePaths.ipc: `/etc/passwd` is not a namespace file");
    EXPECT_NE(refused({{"mount", base + "mnt"}}).find("not supported"), std::string::npos);
    EXPECT_NE(refused({{"time", base + "time"}}).find("unknown namespace"), std::string::npos);
    EXPECT_NE(refused({{"uts", "/proc/../x"}}).find("without `..`"), std::string::npos);
    EXPECT_EQ(_rt->list(true).size(), 1u);
    _rt->remove("ns1", true);
    EXPECT_EQ(reap(apid), 128 + SIGKILL);
    expectNothingLeft();
}

TEST_F(OciTest, GcReleasesACreateKilledWhileItsInitWaits) {
    json created = _rt->create(ociSpec("gc1", {"/bin/sleep", "100"}));
    pid_t pid = created["pid"];
    // Make the record what a create killed after the launch leaves: "creating", its
    // creator gone (a child of ours that exited), the init's pid recorded.
    pid_t gone = ::fork();
    if (gone == 0) ::_exit(0);
    json creator = processIdentity(gone);
    ASSERT_EQ(reap(gone), 0);
    auto rec = host().get(kContainerKind, created["id"]);
    ASSERT_TRUE(rec);
    (*rec)["status"] = "creating";
    (*rec)["creator"] = creator;
    host().put(kContainerKind, created["id"], "gc1", *rec);
    EXPECT_TRUE(processAlive(pid, rec->value("pid_start", uint64_t(0))));
    json out = _rt->gc();
    EXPECT_EQ(out["released"].size(), 1u) << out.dump();
    EXPECT_EQ(reap(pid), 128 + SIGKILL);
    expectNothingLeft();
}

TEST_F(OciTest, ACommandGoneBeforeStartFailsOnTheInitsStderr) {
    const std::string name = "/tmp/gone-" + std::to_string(::getpid());
    const std::string host = rootfsPath() + name;
    {
        std::ofstream f(host);
        f << "#!/bin/sh\necho ran\n";
    }
    ::chmod(host.c_str(), 0755);
    Capture out, err;
    json created;
    {
        OwnStdio io(0, out.fd, err.fd);
        created = _rt->create(ociSpec("gone1", {name}));
    }
    remember(created);
    ::unlink(host.c_str());
    _rt->start("gone1");
    EXPECT_EQ(reap(created["pid"]), 127);
    EXPECT_EQ(out.text(), "");
    EXPECT_EQ(err.text(), "mobileops: exec `" + name + "`: not found\n");
    _rt->remove("gone1", false);
    expectNothingLeft();
}

TEST_F(OciTest, WithTheBuiltInInitTheCommandWaitsAtTheGate) {
    Capture out;
    json created;
    json s = ociSpec("init1", {"/bin/sh", "-c", "echo child-ran; exit 4"});
    s["process"]["init"] = true;
    {
        OwnStdio io(0, out.fd, out.fd);
        created = _rt->create(s);
    }
    remember(created);
    pid_t pid = created["pid"];
    EXPECT_EQ(out.text(), "");
    _rt->start("init1");
    EXPECT_EQ(reap(pid), 4) << "the init exits with its child's status";
    EXPECT_EQ(out.text(), "child-ran\n");
    _rt->remove("init1", false);
    expectNothingLeft();
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
