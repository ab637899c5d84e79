// The runtime service as the CLI uses it: the built nsruntime.so loaded by the core's
// PluginManager, over the core's host table and SQLite store in a temporary root.
// Detached containers under their monitor, exec, stop, kill, remove, gc, parallel boots,
// and the plugin's C ABI. Needs root.
#include "RuntimeFixture.h"

TEST_F(RuntimeTest, CreateStartWaitRecordsExitAndLog) {
    json created = _rt->create(spec("t1", {"/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"}));
    EXPECT_EQ(created["status"], "created");
    EXPECT_EQ(created["name"], "t1");
    EXPECT_EQ(created["id"].get<std::string>().size(), 64u);
    EXPECT_EQ(created["runtime"], "namespace");
    _rt->start("t1");
    EXPECT_EQ(_rt->wait("t1"), 3);
    json st = _rt->state("t1");
    EXPECT_EQ(st["status"], "stopped");
    EXPECT_EQ(st["exit_code"], 3);
    EXPECT_EQ(st["signal"], 0);
    EXPECT_TRUE(st.contains("started"));
    EXPECT_TRUE(st.contains("finished"));
    std::string log = logOf(created["id"]);
    EXPECT_NE(log.find(" stdout F hello\n"), std::string::npos) << log;
    EXPECT_NE(log.find(" stderr F oops\n"), std::string::npos) << log;
    // A stopped container starts again.
    _rt->start("t1");
    EXPECT_EQ(_rt->wait("t1"), 3);
}

TEST_F(RuntimeTest, DetachedContainerOutlivesItsCallerUnderAMonitor) {
    json st = boot(spec("t2", {"/bin/sleep", "100"}));
    EXPECT_EQ(st["status"], "running");
    pid_t pid = st["pid"], monitor = st["monitor_pid"];
    ASSERT_GT(pid, 0);
    ASSERT_GT(monitor, 0);
    auto info = processInfo(pid);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->ppid, monitor) << "the monitor is the parent of the container's init";
    auto minfo = processInfo(monitor);
    ASSERT_TRUE(minfo);
    EXPECT_NE(minfo->ppid, ::getpid()) << "the monitor is detached from the caller";
    EXPECT_TRUE(noChildren());
    EXPECT_EQ(_rt->list(false).size(), 1u);
    EXPECT_EQ(errorOf([&] { _rt->start("t2"); }), "container `t2` is already running");
}

TEST_F(RuntimeTest, StopKillsAProcessIgnoringSigtermAfterTheTimeout) {
    boot(spec("t3", {"/bin/sleep", "100"})); // PID 1 without a handler ignores SIGTERM
    auto t0 = std::chrono::steady_clock::now();
    _rt->stop("t3", 1);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_GE(secs, 0.9);
    EXPECT_LT(secs, 6);
    json st = _rt->state("t3");
    EXPECT_EQ(st["status"], "stopped");
    EXPECT_EQ(st["exit_code"], 137);
    EXPECT_EQ(st["signal"], 9);
}

TEST_F(RuntimeTest, StopWithInitEndsOnSigterm) {
    json s = spec("t4", {"/bin/sleep", "100"});
    s["process"]["init"] = true;
    boot(s);
    auto t0 = std::chrono::steady_clock::now();
    _rt->stop("t4", 10);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(secs, 5);
    EXPECT_EQ(_rt->state("t4")["exit_code"], 128 + SIGTERM);
}

TEST_F(RuntimeTest, ExecJoinsTheContainer) {
    json s = spec("t5", {"/bin/sleep", "100"});
    s["hostname"] = "exechost";
    s["process"]["env"] = {"PATH=/bin:/usr/bin", "A=1"};
    boot(s);
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    int status = _rt->exec(
        "t5",
        {{"args", {"/bin/sh", "-c", "hostname; echo $A$B; ls -d /proc/[0-9]* | head -1; exit 7"}},
         {"env", {"B=2"}}},
        stdio);
    EXPECT_EQ(status, 7);
    EXPECT_EQ(out.text(), "exechost\n12\n/proc/1\n");
    Capture who;
    stdio.out = who.fd;
    EXPECT_EQ(_rt->exec("t5", {{"args", {"id", "-u"}}, {"user", "user"}}, stdio), 0);
    EXPECT_EQ(who.text(), "1000\n");
    try {
        _rt->exec("t5", {{"args", {"/bin/nosuch"}}}, stdio);
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_STREQ(e.what(), "exec `/bin/nosuch`: No such file or directory");
        EXPECT_EQ(e.exitStatus(), 127);
    }
}

TEST_F(RuntimeTest, KillRecordsTheSignal) {
    boot(spec("t6", {"/bin/sleep", "100"}));
    _rt->kill("t6", SIGKILL, false);
    EXPECT_EQ(_rt->wait("t6"), 137);
    EXPECT_EQ(_rt->state("t6")["signal"], 9);
    EXPECT_EQ(errorOf([&] { _rt->kill("t6", SIGTERM, false); }), "container `t6` is not running");
}

TEST_F(RuntimeTest, KillAllReachesEveryProcess) {
    // The shell is PID 1 without a handler: SIGTERM from outside does not reach it. Only
    // signalling every process ends the sleeps, and with them the shell's wait.
    // A kill that misses a sleep leaves wait blocked until the test's timeout.
    boot(spec("t7", {"/bin/sh", "-c", "sleep 10000 & sleep 10000 & wait"}));
    for (int i = 0; i < 200 && _rt->top("t7").size() < 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(_rt->top("t7").size(), 3u) << _rt->top("t7").dump();
    _rt->kill("t7", SIGTERM, true);
    EXPECT_EQ(_rt->wait("t7"), 0) << _rt->state("t7").dump();
}

TEST_F(RuntimeTest, TopListsTheContainersProcesses) {
    boot(spec("t8", {"/bin/sh", "-c", "sleep 100 & exec sleep 101"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    json top = _rt->top("t8");
    ASSERT_EQ(top.size(), 2u) << top.dump();
    std::set<std::string> commands;
    for (auto &p : top) commands.insert(p["command"]);
    EXPECT_TRUE(commands.count("sleep 100"));
    EXPECT_TRUE(commands.count("sleep 101"));
    EXPECT_EQ(top[0]["user"], "0");
}

TEST_F(RuntimeTest, AttachStreamsNewOutputUntilExit) {
    boot(spec("t9", {"/bin/sh", "-c", "sleep 0.5; echo late; echo err >&2; sleep 0.3"}));
    Capture out, err;
    Stdio stdio;
    stdio.out = out.fd;
    stdio.err = err.fd;
    _rt->attach("t9", stdio);
    EXPECT_EQ(out.text(), "late\n");
    EXPECT_EQ(err.text(), "err\n");
}

TEST_F(RuntimeTest, KilledMonitorIsReconciled) {
    json st = boot(spec("t10", {"/bin/sleep", "100"}));
    pid_t pid = st["pid"], monitor = st["monitor_pid"];
    ::kill(monitor, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(_rt->state("t10")["status"], "running") << "the container outlives its monitor";
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 100 && processAlive(pid, 0); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    json now = _rt->state("t10");
    EXPECT_EQ(now["status"], "stopped");
    EXPECT_EQ(now["exit_code"], -1);
    EXPECT_EQ(now["error"], "the container's monitor is gone: exit status unknown");
    EXPECT_EQ(_rt->list(false).size(), 0u);
}

TEST_F(RuntimeTest, RemoveRunningNeedsForceAndLeavesNothing) {
    json st = boot(spec("t11", {"/bin/sleep", "100"}));
    EXPECT_EQ(errorOf([&] { _rt->remove("t11", false); }),
              "container `t11` is running: stop it first or use --force");
    _rt->remove("t11", true);
    EXPECT_EQ(errorOf([&] { _rt->state("t11"); }), "no such container `t11`");
    struct stat s;
    EXPECT_NE(::stat(containerDir(st["id"]).c_str(), &s), 0);
    EXPECT_FALSE(processAlive(st["pid"], 0));
    EXPECT_FALSE(processAlive(st["monitor_pid"], 0));
}

TEST_F(RuntimeTest, NamesAreUniqueAndRefsResolve) {
    json a = _rt->create(spec("dup", {"/bin/true"}));
    EXPECT_EQ(errorOf([&] { _rt->create(spec("dup", {"/bin/true"})); }),
              "container name `dup` is already in use");
    EXPECT_EQ(_rt->state(a["id"].get<std::string>().substr(0, 8))["name"], "dup");
    EXPECT_EQ(_rt->state(a["id"])["name"], "dup");
    EXPECT_EQ(errorOf([&] { _rt->start("nope"); }), "no such container `nope`");
    EXPECT_EQ(errorOf([&] { _rt->create(spec("bad/name", {"/bin/true"})); }).substr(0, 33),
              "invalid container name `bad/name`");
    EXPECT_EQ(_rt->list(true).size(), 1u);
}

TEST_F(RuntimeTest, FailedCreateLeavesNothing) {
    json s = spec("t12", {"/bin/true"});
    s["rootfs"] = "/nonexistent-rootfs";
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "rootfs `/nonexistent-rootfs`: No such file or directory");
    s["rootfs"] = "/etc/passwd";
    EXPECT_EQ(errorOf([&] { _rt->create(s); }), "rootfs `/etc/passwd` is not a directory");
    EXPECT_EQ(_rt->list(true).size(), 0u);
}

TEST_F(RuntimeTest, StartFailureIsRecorded) {
    _rt->create(spec("t13", {"/bin/nosuch"}));
    EXPECT_EQ(errorOf([&] { _rt->start("t13"); }), "exec `/bin/nosuch`: No such file or directory");
    // The C function has no exit status: the engine's LaunchError carries it.
    try {
        engine().start("t13");
        FAIL() << "expected a launch error";
    } catch (const LaunchError &e) {
        EXPECT_STREQ(e.what(), "exec `/bin/nosuch`: No such file or directory");
        EXPECT_EQ(e.exitStatus(), 127);
    }
    json st = _rt->state("t13");
    EXPECT_EQ(st["status"], "stopped");
    EXPECT_EQ(st["exit_code"], 127);
}

TEST_F(RuntimeTest, ForegroundRun) {
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    EXPECT_EQ(_rt->run(spec("fg", {"/bin/sh", "-c", "echo $$ $(hostname); exit 5"}), stdio, true),
              5);
    EXPECT_EQ(out.text(), "1 fg\n");
    EXPECT_EQ(_rt->list(true).size(), 0u) << "--rm removed the record";
    EXPECT_TRUE(noChildren());

    EXPECT_EQ(_rt->run(spec("fg2", {"/bin/sh", "-c", "exit 4"}), stdio, false), 4);
    json st = _rt->state("fg2");
    EXPECT_EQ(st["status"], "stopped");
    EXPECT_EQ(st["exit_code"], 4);

    for (bool rm : {true, false}) {
        try {
            _rt->run(spec(rm ? "miss1" : "miss2", {"/bin/nosuch"}), stdio, rm);
            FAIL() << "expected a launch error";
        } catch (const LaunchError &e) {
            EXPECT_EQ(e.exitStatus(), 127);
        }
    }
    EXPECT_EQ(errorOf([&] { _rt->state("miss1"); }), "no such container `miss1`");
    EXPECT_EQ(_rt->state("miss2")["exit_code"], 127);
}

TEST_F(RuntimeTest, GcReleasesAnInterruptedCreate) {
    // What a create killed with SIGKILL leaves: a "creating" record whose creator is gone,
    // and its directory.
    pid_t dead = ::fork();
    if (dead == 0) ::_exit(0);
    ::waitpid(dead, nullptr, 0);
    std::string id = newContainerId();
    json rec = {{"id", id},
                {"name", "interrupted"},
                {"status", "creating"},
                {"creator", {{"pid", dead}, {"start", 1}}},
                {"spec", spec("interrupted", {"/bin/true"})}};
    Host host = this->host();
    host.put(kContainerKind, id, "interrupted", rec, true);
    std::filesystem::create_directories(containerDir(id));
    std::string orphan = containerDir(newContainerId());
    std::filesystem::create_directories(orphan);
    // An in-progress create (creator alive) is left alone.
    std::string live = newContainerId();
    json liveRec = {{"id", live},
                    {"name", "inprogress"},
                    {"status", "creating"},
                    {"creator", processIdentity(::getpid())},
                    {"spec", rec["spec"]}};
    host.put(kContainerKind, live, "inprogress", liveRec, true);

    json report = _rt->gc();
    ASSERT_EQ(report["released"].size(), 2u) << report.dump();
    EXPECT_FALSE(host.get(kContainerKind, id));
    EXPECT_TRUE(host.get(kContainerKind, live));
    struct stat st;
    EXPECT_NE(::stat(containerDir(id).c_str(), &st), 0);
    EXPECT_NE(::stat(orphan.c_str(), &st), 0);
    host.remove(kContainerKind, live);
}

TEST_F(RuntimeTest, TwentyParallelBoots) {
    std::vector<pid_t> children;
    for (int i = 0; i < 20; ++i) {
        pid_t c = ::fork();
        if (c == 0) {
            try {
                // The parent's plugin and store: the store reconnects in a forked child.
                json st = _rt->create(spec("par" + std::to_string(i), {"/bin/sleep", "100"}));
                _rt->start(st["id"]);
                ::_exit(0);
            } catch (const std::exception &e) {
                std::fprintf(stderr, "boot %d: %s\n", i, e.what());
                ::_exit(1);
            }
        }
        children.push_back(c);
    }
    int failed = 0;
    for (pid_t c : children) {
        int status;
        ::waitpid(c, &status, 0);
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    EXPECT_EQ(failed, 0);
    json running = _rt->list(false);
    EXPECT_EQ(running.size(), 20u);
    std::set<std::string> names;
    std::set<int> pids;
    for (auto &c : running) {
        names.insert(c["name"]);
        pids.insert(c["pid"].get<int>());
        remember(c);
        EXPECT_EQ(c["status"], "running");
        EXPECT_TRUE(processAlive(c["pid"], 0));
    }
    EXPECT_EQ(names.size(), 20u);
    EXPECT_EQ(pids.size(), 20u);
}

TEST_F(RuntimeTest, PauseNeedsTheCgroupService) {
    if (hasCgroupService()) GTEST_SKIP() << "a cgroup plugin is in the build's plugin directory";
    boot(spec("t14", {"/bin/sleep", "100"}));
    EXPECT_EQ(errorOf([&] { _rt->pause("t14"); }), "pause needs the cgroup service");
    EXPECT_EQ(errorOf([&] { _rt->update("t14", json::object()); }),
              "update needs the cgroup service");
    EXPECT_EQ(errorOf([&] { _rt->stats("t14"); }), "stats needs the cgroup service");
    EXPECT_FALSE(_rt->state("t14").contains("cgroup"));
}

// The plugin as the core loads it: entry point, init with the host table, the service's
// C functions, error slots and exit statuses.
TEST_F(RuntimeTest, PluginAbi) {
    core::PluginRecord &rec = plugin();
    EXPECT_TRUE(std::filesystem::equivalent(rec.path, NSRUNTIME_PLUGIN_PATH)) << rec.path;
    ASSERT_EQ(rec.state, core::PluginRecord::State::Loaded) << rec.error; // init returned 0
    const mo_plugin_descriptor *d = &rec.descriptor;
    EXPECT_STREQ(d->name, "nsruntime");
    EXPECT_EQ(d->abi_major, static_cast<uint32_t>(MO_ABI_MAJOR));
    ASSERT_TRUE(d->provides && d->provides[0]);
    EXPECT_STREQ(d->provides[0], "runtime:namespace");
    const mo_probe &probe = _manager->probe(rec);
    EXPECT_EQ(probe.usable, 1) << probe.reason;
    auto *rt =
        static_cast<const mo_runtime_service *>(_manager->service(MO_SERVICE_RUNTIME, "namespace"));
    ASSERT_TRUE(rt);
    EXPECT_EQ(rt, _iface);

    Capture out;
    mo_error err = MO_ERROR_INIT;
    mo_stdio stdio = {sizeof(mo_stdio), -1, out.fd, -1, 0};
    int status = -1;
    std::string s = spec("abi", {"/bin/nosuch"}).dump();
    int rc = rt->run(rt->self, s.c_str(), &stdio, MO_RUNTIME_AUTOREMOVE, &status, &err);
    EXPECT_EQ(rc, -ENOENT);
    EXPECT_EQ(status, 127);
    EXPECT_STREQ(err.message, "exec `/bin/nosuch`: No such file or directory");

    s = spec("abi", {"/bin/sh", "-c", "echo abi; exit 9"}).dump();
    EXPECT_EQ(rt->run(rt->self, s.c_str(), &stdio, MO_RUNTIME_AUTOREMOVE, &status, &err), 0);
    EXPECT_EQ(status, 9);
    EXPECT_EQ(out.text(), "abi\n");

    mo_buffer buf = MO_BUFFER_INIT;
    ASSERT_EQ(rt->list(rt->self, MO_RUNTIME_ALL, &buf, &err), 0);
    EXPECT_EQ(std::string(buf.data, buf.len), "[]");
    _manager->hostApi()->buffer_free(&buf);
    EXPECT_EQ(rt->state(rt->self, "nope", &buf, &err), MO_E_NOT_FOUND);
    EXPECT_STREQ(err.message, "no such container `nope`");
    EXPECT_EQ(rt->start(rt->self, nullptr, &err), MO_E_INVALID);
    EXPECT_EQ(rt->pause(rt->self, "nope", &err),
              hasCgroupService() ? MO_E_NOT_FOUND : MO_E_UNSUPPORTED);
    s = "{not json";
    EXPECT_EQ(rt->create(rt->self, s.c_str(), &buf, &err), MO_E_INVALID);
}

// What the core sends for `--user user --group-add tty --group-add 4242 --ulimit core=-1`,
// through the plugin: supplementary groups and the unlimited limit, seen from inside.
TEST_F(RuntimeTest, CoreUserAndUnlimitedRlimitReachTheProcess) {
    json s = spec("groups", {"/bin/sh", "-c", "id -u; id -G; ulimit -c; ulimit -Hc"});
    s["process"]["user"] = {
        {"name", "user"}, {"additionalGids", {4242}}, {"additionalGroups", {"tty"}}};
    s["process"]["rlimits"] = {{{"type", "RLIMIT_CORE"}, {"soft", -1}, {"hard", -1}}};
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    EXPECT_EQ(_rt->run(s, stdio, true), 0);
    EXPECT_EQ(out.text(), "1000\n1000 5 100 4242\nunlimited\nunlimited\n");

    // exec keeps the container's user, groups and limits.
    s["process"]["args"] = {"/bin/sleep", "100"};
    boot(s);
    Capture execOut;
    stdio.out = execOut.fd;
    EXPECT_EQ(_rt->exec("groups", {{"args", {"/bin/sh", "-c", "id -G; ulimit -c"}}}, stdio), 0);
    EXPECT_EQ(execOut.text(), "1000 5 100 4242\nunlimited\n");

    s = spec("nogroup", {"/bin/true"});
    s["process"]["user"] = {{"name", "user"}, {"additionalGroups", {"nosuch"}}};
    EXPECT_EQ(errorOf([&] { _rt->create(s); }),
              "group `nosuch` not found in the container's /etc/group");
    EXPECT_EQ(errorOf([&] { _rt->state("nogroup"); }), "no such container `nogroup`");
}

// Containers with the cgroup service (the build's cgroup.so): each in its own cgroup
// `mobileops/<id>` on every hierarchy the service uses, which is also the root of its
// cgroup namespace.
namespace {

std::vector<std::string> splitOn(const std::string &s, char sep) {
    std::vector<std::string> out;
    std::istringstream in(s);
    for (std::string part; std::getline(in, part, sep);) out.push_back(part);
    return out;
}

// One line of /proc/PID/cgroup: "4:memory:/mobileops/<id>".
struct CgroupLine {
    std::string controllers, path;
};
std::vector<CgroupLine> cgroupLines(const std::string &text) {
    std::vector<CgroupLine> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        auto a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        out.push_back({line.substr(a + 1, b - a - 1), line.substr(b + 1)});
    }
    return out;
}

// The mountpoint of the hierarchy named by a /proc/PID/cgroup controllers field ("" is
// cgroup2), from this process's mountinfo.
std::string mountOf(const std::string &controllers) {
    std::istringstream in(slurp("/proc/self/mountinfo"));
    for (std::string line; std::getline(in, line);) {
        auto dash = line.find(" - ");
        if (dash == std::string::npos) continue;
        auto fields = splitOn(line.substr(0, dash), ' ');
        auto tail = splitOn(line.substr(dash + 3), ' ');
        if (fields.size() < 5 || tail.size() < 3) continue;
        if (controllers.empty() && tail[0] == "cgroup2") return fields[4];
        if (controllers.empty() || tail[0] != "cgroup") continue;
        auto opts = splitOn(tail[2], ',');
        bool all = true;
        for (const auto &c : splitOn(controllers, ','))
            all = all && std::find(opts.begin(), opts.end(), c) != opts.end();
        if (all) return fields[4];
    }
    return "";
}

// The container's cgroup directories, from its init's /proc/PID/cgroup seen from here.
std::vector<std::string> cgroupDirs(pid_t pid, const std::string &id) {
    std::vector<std::string> out;
    for (const auto &l : cgroupLines(slurp("/proc/" + std::to_string(pid) + "/cgroup")))
        if (l.path.size() >= id.size() + 11 &&
            l.path.compare(l.path.size() - id.size() - 11, std::string::npos, "/mobileops/" + id) ==
                0) {
            std::string mount = mountOf(l.controllers);
            if (!mount.empty()) out.push_back(mount + l.path);
        }
    return out;
}

std::string dirWith(const std::vector<std::string> &dirs, const std::string &file) {
    for (const auto &d : dirs)
        if (std::filesystem::exists(d + "/" + file)) return d;
    return "";
}

std::vector<pid_t> procsOf(const std::string &dir) {
    std::vector<pid_t> out;
    std::istringstream in(slurp(dir + "/cgroup.procs"));
    for (long p; in >> p;) out.push_back(static_cast<pid_t>(p));
    return out;
}

size_t logLines(const std::string &text) {
    std::istringstream in(text);
    size_t n = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find(" stdout F ") != std::string::npos) ++n;
    return n;
}

class CgroupRuntimeTest : public RuntimeTest {
protected:
    void SetUp() override {
        RuntimeTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (!hasCgroupService()) GTEST_SKIP() << "no cgroup plugin in the build's plugin directory";
    }
    // Wait until `pred` holds, up to `ms`.
    bool eventually(const std::function<bool()> &pred, int ms = 5000) {
        for (int i = 0; i < ms / 10; ++i) {
            if (pred()) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return pred();
    }
};

} // namespace

TEST_F(CgroupRuntimeTest, EveryContainerHasACgroupThatIsItsNamespaceRoot) {
    json st = boot(spec("cg1", {"/bin/sh", "-c", "cat /proc/self/cgroup; exec sleep 100"}));
    std::string id = st["id"];
    EXPECT_EQ(st["cgroup"], "mobileops/" + id) << "no resources asked, still a cgroup";
    std::vector<std::string> dirs = cgroupDirs(st["pid"], id);
    EXPECT_GE(dirs.size(), 3u) << slurp("/proc/" + std::to_string(st["pid"].get<int>()) +
                                        "/cgroup");
    for (const auto &d : dirs)
        EXPECT_NE(std::find(procsOf(d).begin(), procsOf(d).end(), st["pid"].get<pid_t>()),
                  procsOf(d).end())
            << d;
    EXPECT_TRUE(dirWith(dirs, "memory.limit_in_bytes").size() ||
                dirWith(dirs, "memory.max").size());
    // What the init saw: the root of every hierarchy is its own cgroup.
    ASSERT_TRUE(eventually([&] { return logLines(logOf(id)) > 0; }));
    std::string log = logOf(id);
    size_t lines = 0;
    for (const auto &line : splitOn(log, '\n')) {
        if (line.find(" stdout F ") == std::string::npos) continue;
        ++lines;
        EXPECT_EQ(line.substr(line.size() - 2), ":/") << line;
    }
    EXPECT_GE(lines, dirs.size()) << log;

    // exec joins the same cgroup before its namespaces: `/` everywhere too.
    Capture out;
    Stdio stdio;
    stdio.out = out.fd;
    EXPECT_EQ(_rt->exec("cg1", {{"args", {"/bin/cat", "/proc/self/cgroup"}}}, stdio), 0);
    auto seen = cgroupLines(out.text());
    EXPECT_GE(seen.size(), dirs.size());
    for (const auto &l : seen) EXPECT_EQ(l.path, "/") << out.text();

    // A foreground run too.
    Capture fg;
    stdio.out = fg.fd;
    EXPECT_EQ(_rt->run(spec("cg1fg", {"/bin/cat", "/proc/self/cgroup"}), stdio, true), 0);
    for (const auto &l : cgroupLines(fg.text())) EXPECT_EQ(l.path, "/") << fg.text();

    _rt->remove("cg1", true);
    for (const auto &d : dirs) EXPECT_FALSE(std::filesystem::exists(d)) << d << " left behind";
}

TEST_F(CgroupRuntimeTest, KillAllStopAndDeleteLeaveNothingOfAForkingTree) {
    // Without a PID namespace only the cgroup knows every process; one escapes its
    // parent by a double fork.
    const char *tree = "trap '' TERM; sleep 100 & sleep 100 & (sleep 100 &); wait; sleep 100";
    json s = spec("cg2", {"/bin/sh", "-c", tree});
    s["namespaces"] = {{"pid", false}};
    json st = boot(s);
    std::string id = st["id"];
    std::vector<std::string> dirs = cgroupDirs(st["pid"], id);
    ASSERT_FALSE(dirs.empty());
    ASSERT_TRUE(eventually([&] { return procsOf(dirs[0]).size() >= 4; })) << dirs[0];
    std::vector<pid_t> procs = procsOf(dirs[0]);
    _rt->kill("cg2", SIGKILL, true);
    for (pid_t p : procs) EXPECT_FALSE(processAlive(p, 0)) << "pid " << p << " survived";
    for (const auto &d : dirs) EXPECT_TRUE(!std::filesystem::exists(d) || procsOf(d).empty()) << d;
    EXPECT_EQ(_rt->wait("cg2"), 137) << _rt->state("cg2").dump();

    // stop: the init ignores SIGTERM, the final SIGKILL goes to the whole cgroup.
    s["name"] = "cg3";
    st = boot(s);
    dirs = cgroupDirs(st["pid"], st["id"]);
    ASSERT_FALSE(dirs.empty());
    ASSERT_TRUE(eventually([&] { return procsOf(dirs[0]).size() >= 4; }));
    procs = procsOf(dirs[0]);
    _rt->stop("cg3", 1);
    for (pid_t p : procs) EXPECT_FALSE(processAlive(p, 0)) << "pid " << p << " survived stop";
    EXPECT_EQ(_rt->state("cg3")["exit_code"], 137);

    // remove --force of a running tree, then no directory on any hierarchy.
    s["name"] = "cg4";
    st = boot(s);
    dirs = cgroupDirs(st["pid"], st["id"]);
    ASSERT_TRUE(eventually([&] { return procsOf(dirs[0]).size() >= 4; }));
    procs = procsOf(dirs[0]);
    _rt->remove("cg4", true);
    for (pid_t p : procs) EXPECT_FALSE(processAlive(p, 0)) << "pid " << p << " survived remove";
    _rt->remove("cg2", false);
    _rt->remove("cg3", false);
    for (const std::string &name : {id, st["id"].get<std::string>()}) {
        for (const auto &l : cgroupLines(slurp("/proc/self/cgroup"))) {
            std::string mount = mountOf(l.controllers);
            if (mount.empty()) continue;
            EXPECT_FALSE(std::filesystem::exists(mount + "/mobileops/" + name))
                << mount << "/mobileops/" << name << " left behind";
        }
    }
}

TEST_F(CgroupRuntimeTest, PauseStopsACounterAndResumeRestartsIt) {
    json s =
        spec("cg5", {"/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"});
    s["process"]["init"] = true; // ends on SIGTERM
    boot(s);
    std::string id = _rt->state("cg5")["id"];
    ASSERT_TRUE(eventually([&] { return logLines(logOf(id)) > 3; }));
    _rt->pause("cg5");
    EXPECT_EQ(_rt->state("cg5")["status"], "paused");
    EXPECT_EQ(_rt->list(false).at(0)["status"], "paused");
    EXPECT_EQ(errorOf([&] { _rt->pause("cg5"); }), "container `cg5` is already paused");
    EXPECT_TRUE(_rt->stats("cg5")["frozen"].get<bool>());
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // output in flight
    size_t before = logLines(logOf(id));
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    EXPECT_EQ(logLines(logOf(id)), before) << "the counter ran while paused";
    _rt->resume("cg5");
    EXPECT_EQ(_rt->state("cg5")["status"], "running");
    EXPECT_EQ(errorOf([&] { _rt->resume("cg5"); }), "container `cg5` is not paused");
    EXPECT_TRUE(eventually([&] { return logLines(logOf(id)) > before + 3; }, 2000));
    // A paused container stops without waiting for the timeout (waiting for it would
    // outlast the test's own timeout).
    _rt->pause("cg5");
    _rt->stop("cg5", 1000);
    EXPECT_EQ(_rt->state("cg5")["status"], "stopped");
}

TEST_F(CgroupRuntimeTest, UpdateChangesTheLiveMemoryLimit) {
    json s = spec("cg6", {"/bin/sleep", "100"});
    s["resources"] = {{"limits", {{"memory", 64 << 20}, {"pids", 50}}}};
    json st = boot(s);
    std::vector<std::string> dirs = cgroupDirs(st["pid"], st["id"]);
    std::string file = "memory.limit_in_bytes";
    std::string dir = dirWith(dirs, file);
    if (dir.empty()) dir = dirWith(dirs, file = "memory.max");
    ASSERT_FALSE(dir.empty());
    EXPECT_EQ(std::stoll(slurp(dir + "/" + file)), 64 << 20);
    _rt->update("cg6", {{"limits", {{"memory", 128 << 20}}}});
    EXPECT_EQ(std::stoll(slurp(dir + "/" + file)), 128 << 20);
    json res = _rt->state("cg6")["spec"]["resources"];
    EXPECT_EQ(res["limits"]["memory"], 128 << 20) << res.dump();
    EXPECT_EQ(res["limits"]["pids"], 50) << "an update merges into the recorded resources";
    EXPECT_EQ(_rt->stats("cg6")["memory"]["limit"], 128 << 20);
}

TEST_F(CgroupRuntimeTest, StatsCarryRealFigures) {
    json st = boot(spec("cg7", {"/bin/sh", "-c",
                                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); "
                                "done; exec sleep 100"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    json stats = _rt->stats("cg7");
    EXPECT_EQ(stats["id"], st["id"]);
    EXPECT_EQ(stats["name"], "cg7");
    EXPECT_GT(stats["cpu"].value("usage_ns", int64_t(0)), 10'000'000) << stats.dump();
    EXPECT_GT(stats["memory"].value("current", int64_t(0)), 0) << stats.dump();
    EXPECT_GE(stats["pids"].value("current", 0), 1) << stats.dump();
    EXPECT_FALSE(stats["frozen"].get<bool>());
    _rt->stop("cg7", 0);
    try {
        _rt->stats("cg7");
        FAIL() << "stats of a stopped container";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_STATE);
        EXPECT_STREQ(e.what(), "container `cg7` is not running");
    }
}

TEST_F(CgroupRuntimeTest, OomKilledContainerIsRecordedWith137) {
    // dd's 100MB block is written to as it reads /dev/zero: past 32Mi, the OOM killer.
    json s = spec("cg8", {"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1"});
    s["resources"] = {{"limits", {{"memory", 32 << 20}}}};
    boot(s);
    EXPECT_EQ(_rt->wait("cg8"), 137);
    json st = _rt->state("cg8");
    EXPECT_EQ(st["exit_code"], 137);
    EXPECT_EQ(st.value("oom_killed", false), true) << st.dump();

    // Foreground: run records it.
    s["name"] = "cg9";
    Stdio stdio;
    EXPECT_EQ(_rt->run(s, stdio, false), 137);
    st = _rt->state("cg9");
    EXPECT_EQ(st.value("oom_killed", false), true) << st.dump();

    // An ordinary SIGKILL is not an OOM kill.
    boot(spec("cg10", {"/bin/sleep", "100"}));
    _rt->kill("cg10", SIGKILL, false);
    EXPECT_EQ(_rt->wait("cg10"), 137) << _rt->state("cg10").dump();
    EXPECT_FALSE(_rt->state("cg10").contains("oom_killed"));
}

TEST_F(CgroupRuntimeTest, PidsLimitCapsAForkLoop) {
    // A failed fork ends the subshell; the container goes on.
    json s =
        spec("cg11", {"/bin/sh", "-c",
                      "(for i in $(seq 40); do sleep 100 & echo started; done); exec sleep 100"});
    s["resources"] = {{"limits", {{"pids", 20}}}};
    json st = boot(s);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    json stats = _rt->stats("cg11");
    EXPECT_EQ(stats["pids"]["limit"], 20) << stats.dump();
    EXPECT_LE(stats["pids"]["current"].get<int>(), 20) << stats.dump();
    EXPECT_GE(stats["pids"]["current"].get<int>(), 10) << stats.dump();
    EXPECT_LE(_rt->top("cg11").size(), 20u);
    std::string log = logOf(st["id"]);
    EXPECT_NE(log.find("fork"), std::string::npos) << "the shell reports failed forks: " << log;
    size_t started = 0;
    for (size_t at = 0; (at = log.find("F started", at)) != std::string::npos; ++at) ++started;
    EXPECT_LT(started, 20u) << log;
    EXPECT_GE(started, 10u) << log;
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new RootfsEnvironment);
    return RUN_ALL_TESTS();
}
