// mobileops-runc as an engine drives it: a bundle made with `spec`, then create, start,
// state, kill, delete, run, exec, pause, update, and errors in the --log file. Each test
// has its own --root under a temporary directory; the tear-down deletes every container
// left there and fails on a mount left below it. Needs root.
#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace mobileops::test {
namespace {

using json = nlohmann::json;

std::string runc() { return MOBILEOPS_BINARY_DIR "/bin/mobileops-runc"; }

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

class OciCli : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, mounts, cgroups)";
        _bundle = _tmp.path() + "/bundle";
        ::mkdir(_bundle.c_str(), 0755);
        Result r = run({MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh", _bundle + "/rootfs"});
        ASSERT_EQ(r.status, 0) << r.err;
        r = oci({"spec", "--bundle", _bundle});
        ASSERT_EQ(r.status, 0) << r.err;
        _config = json::parse(slurp(_bundle + "/config.json"));
        _config["process"]["terminal"] = false;
        _config["root"]["readonly"] = false;
        setArgs({"sleep", "600"});
    }

    void TearDown() override {
        if (_bundle.empty()) return;
        Result r = oci({"list", "--format", "json"});
        if (r.status == 0 && !r.out.empty())
            for (const auto &c : json::parse(r.out)) oci({"delete", "--force", c["id"]});
        std::ifstream mounts("/proc/self/mountinfo");
        for (std::string line; std::getline(mounts, line);)
            EXPECT_EQ(line.find(_tmp.path()), std::string::npos) << "mount left behind: " << line;
    }

    void setArgs(const std::vector<std::string> &args) {
        _config["process"]["args"] = args;
        std::ofstream(_bundle + "/config.json") << _config.dump(2);
    }

    Result oci(const std::vector<std::string> &args) {
        std::vector<std::string> argv{
            runc(),         "--root", _tmp.path() + "/state", "--log", _tmp.path() + "/log.json",
            "--log-format", "json"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, {{"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    }

    json state(const std::string &id) {
        Result r = oci({"state", id});
        EXPECT_EQ(r.status, 0) << r.err;
        return r.status == 0 ? json::parse(r.out) : json::object();
    }

    // Poll (bounded by count, not by time) until the container reaches `status`.
    bool waitFor(const std::string &id, const std::string &status) {
        for (int i = 0; i < 500; ++i) {
            Result r = oci({"state", id});
            if (r.status == 0 && json::parse(r.out)["status"] == status) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return false;
    }

    TempDir _tmp;
    std::string _bundle;
    json _config;
};

TEST_F(OciCli, SymlinkIsInstalledInTheBuildTree) {
    struct stat st {};
    ASSERT_EQ(::lstat(runc().c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    Result r = run({runc(), "--version"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("mobileops-runc version"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("spec: 1.1.0"), std::string::npos) << r.out;
}

TEST_F(OciCli, CreateStartStateKillDelete) {
    std::string pidFile = _tmp.path() + "/init.pid";
    Result r = oci({"create", "--bundle", _bundle, "--pid-file", pidFile, "c1"});
    ASSERT_EQ(r.status, 0) << r.err;
    json s = state("c1");
    EXPECT_EQ(s["status"], "created");
    EXPECT_EQ(s["id"], "c1");
    EXPECT_EQ(s["bundle"], _bundle);
    EXPECT_EQ(s["ociVersion"], "1.1.0");
    EXPECT_TRUE(s["annotations"].is_object());

    r = oci({"start", "c1"});
    ASSERT_EQ(r.status, 0) << r.err;
    s = state("c1");
    EXPECT_EQ(s["status"], "running");
    int pid = s["pid"];
    ASSERT_GT(pid, 0);
    EXPECT_EQ(::kill(pid, 0), 0) << "the init pid the state names is alive";
    EXPECT_EQ(slurp(pidFile), std::to_string(pid));
    // it runs in the bundle's root
    EXPECT_EQ(slurp("/proc/" + std::to_string(pid) + "/comm"), "sleep\n");

    r = oci({"start", "c1"});
    EXPECT_EQ(r.status, 1) << "a second start fails";

    r = oci({"kill", "c1", "KILL"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(waitFor("c1", "stopped"));
    EXPECT_EQ(state("c1")["pid"], 0);
    r = oci({"kill", "c1", "9"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("container not running"), std::string::npos) << r.err;

    r = oci({"delete", "c1"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = oci({"state", "c1"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
}

TEST_F(OciCli, DeleteUnknownFailsUnlessForced) {
    Result r = oci({"delete", "nosuch"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("container `nosuch` does not exist"), std::string::npos) << r.err;
    r = oci({"delete", "--force", "nosuch"});
    EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(OciCli, DeleteRunningNeedsForce) {
    ASSERT_EQ(oci({"run", "--detach", "--bundle", _bundle, "c2"}).status, 0);
    Result r = oci({"delete", "c2"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("not stopped"), std::string::npos) << r.err;
    r = oci({"delete", "--force", "c2"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(oci({"state", "c2"}).status, 1);
}

TEST_F(OciCli, RunExitStatusIsTheContainers) {
    setArgs({"sh", "-c", "echo out-$((6*7)); exit 7"});
    Result r = oci({"run", "--bundle", _bundle, "r1"});
    EXPECT_EQ(r.status, 7) << r.err;
    EXPECT_EQ(r.out, "out-42\n");
    // runc run removes the container after it exits
    EXPECT_EQ(oci({"state", "r1"}).status, 1);
    setArgs({"true"});
    EXPECT_EQ(oci({"run", "--bundle", _bundle, "r2"}).status, 0);
}

TEST_F(OciCli, ExecInARunningContainer) {
    ASSERT_EQ(oci({"run", "-d", "--bundle", _bundle, "e1"}).status, 0);
    Result r = oci({"exec", "e1", "sh", "-c", "echo in-$(hostname); exit 3"});
    EXPECT_EQ(r.status, 3) << r.err;
    EXPECT_EQ(r.out, "in-mobileops\n");
    std::string process = _tmp.file("process.json", R"({"args": ["cat", "/proc/self/status"],
        "cwd": "/tmp", "env": ["PATH=/bin", "X=y"], "user": {"uid": 65534, "gid": 65534}})");
    r = oci({"exec", "--process", process, "e1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("Uid:\t65534"), std::string::npos) << r.out;
    r = oci({"ps", "--format", "json", "e1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(json::parse(r.out).size(), 1u) << r.out;
}

TEST_F(OciCli, JoinsANetworkNamespaceByPath) {
    ASSERT_EQ(oci({"run", "-d", "--bundle", _bundle, "pod"}).status, 0);
    int pid = state("pod")["pid"];
    // a second container joins the first one's network namespace, as a pod's do
    for (auto &ns : _config["linux"]["namespaces"])
        if (ns["type"] == "network") ns["path"] = "/proc/" + std::to_string(pid) + "/ns/net";
    std::ofstream(_bundle + "/config.json") << _config.dump();
    Result r = oci({"run", "-d", "--bundle", _bundle, "member"});
    ASSERT_EQ(r.status, 0) << r.err;
    Result a = oci({"exec", "pod", "readlink", "/proc/self/ns/net"});
    Result b = oci({"exec", "member", "readlink", "/proc/self/ns/net"});
    ASSERT_EQ(a.status, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
    Result c = oci({"exec", "member", "readlink", "/proc/self/ns/uts"});
    Result d = oci({"exec", "pod", "readlink", "/proc/self/ns/uts"});
    EXPECT_NE(c.out, d.out) << "only the network namespace is shared";
}

TEST_F(OciCli, PauseResumeAndUpdate) {
    ASSERT_EQ(oci({"run", "-d", "--bundle", _bundle, "p1"}).status, 0);
    ASSERT_EQ(oci({"pause", "p1"}).status, 0);
    EXPECT_EQ(state("p1")["status"], "paused");
    ASSERT_EQ(oci({"resume", "p1"}).status, 0);
    EXPECT_EQ(state("p1")["status"], "running");
    std::string res = _tmp.file("res.json", R"({"pids": {"limit": 42}})");
    Result r = oci({"update", "--resources", res, "p1"});
    ASSERT_EQ(r.status, 0) << r.err;
    // the kernel's value, read on the host from the init's pids cgroup (v1, else v2)
    std::string cgroups =
        slurp("/proc/" + std::to_string(state("p1")["pid"].get<int>()) + "/cgroup");
    std::string file;
    if (auto at = cgroups.find(":pids:"); at != std::string::npos)
        file = "/sys/fs/cgroup/pids" + cgroups.substr(at + 6, cgroups.find('\n', at) - at - 6);
    else if (auto v2 = cgroups.find("0::"); v2 != std::string::npos)
        file = "/sys/fs/cgroup" + cgroups.substr(v2 + 3, cgroups.find('\n', v2) - v2 - 3);
    ASSERT_FALSE(file.empty()) << cgroups;
    EXPECT_EQ(slurp(file + "/pids.max"), "42\n") << file;
    res = _tmp.file("bad.json", R"({"memory": {"limit": 12}})");
    r = oci({"update", "--resources", res, "p1"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("resources.memory.limit: `12` is below"), std::string::npos) << r.err;
}

TEST_F(OciCli, ErrorsGoToTheJsonLog) {
    Result r = oci({"state", "nosuch"});
    ASSERT_EQ(r.status, 1);
    std::string log = slurp(_tmp.path() + "/log.json");
    ASSERT_FALSE(log.empty());
    json line = json::parse(log.substr(0, log.find('\n')));
    EXPECT_EQ(line["level"], "error");
    EXPECT_EQ(line["msg"], "container `nosuch` does not exist");
    EXPECT_TRUE(line["time"].is_string());
}

TEST_F(OciCli, WarningsGoToTheLogNotToTheContainersStderr) {
    _config["process"]["apparmorProfile"] = "docker-default";
    std::ofstream(_bundle + "/config.json") << _config.dump();
    Result r = oci({"create", "--bundle", _bundle, "w1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "") << "with --log, stderr (often the container's) stays clean";
    std::string log = slurp(_tmp.path() + "/log.json");
    json line = json::parse(log.substr(0, log.find('\n')));
    EXPECT_EQ(line["level"], "warning");
    EXPECT_NE(line["msg"].get<std::string>().find("process.apparmorProfile"), std::string::npos)
        << log;
}

TEST_F(OciCli, BadConfigNamesThePathAndLeavesNothing) {
    _config["linux"]["resources"]["memory"] = {{"limit", 1000}};
    std::ofstream(_bundle + "/config.json") << _config.dump();
    Result r = oci({"create", "--bundle", _bundle, "--pid-file", _tmp.path() + "/p", "bad"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("config.json: linux.resources.memory.limit: `1000` is below the minimum"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(oci({"state", "bad"}).status, 1);
    struct stat st {};
    EXPECT_NE(::stat((_tmp.path() + "/p").c_str(), &st), 0) << "no pid file";
    // and the same through the log file, for conmon and the shim
    EXPECT_NE(slurp(_tmp.path() + "/log.json").find("linux.resources.memory.limit"),
              std::string::npos);
}

TEST_F(OciCli, HostileIdRefused) {
    Result r = oci({"create", "--bundle", _bundle, "../../etc"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("invalid container id `../../etc`"), std::string::npos) << r.err;
}

TEST_F(OciCli, SystemdCgroupRefused) {
    Result r = run({runc(), "--systemd-cgroup", "state", "x"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("--systemd-cgroup"), std::string::npos) << r.err;
}

TEST_F(OciCli, FeaturesAndSpec) {
    Result r = oci({"features"});
    ASSERT_EQ(r.status, 0) << r.err;
    json f = json::parse(r.out);
    EXPECT_EQ(f["ociVersionMin"], "1.0.0");
    EXPECT_EQ(f["linux"]["cgroup"]["systemd"], false);
    EXPECT_FALSE(f["linux"]["namespaces"].empty());
    r = oci({"spec", "--bundle", _bundle});
    EXPECT_EQ(r.status, 1) << "config.json exists";
}

TEST_F(OciCli, ListShowsThisRootsContainers) {
    ASSERT_EQ(oci({"create", "--bundle", _bundle, "l1"}).status, 0);
    Result r = oci({"list", "--format", "json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json l = json::parse(r.out);
    ASSERT_EQ(l.size(), 1u);
    EXPECT_EQ(l[0]["id"], "l1");
    EXPECT_EQ(l[0]["status"], "created");
}

// containerd passes --root /run/containerd/runc/<namespace>, whose parents a fresh boot
// lacks: they are made (0700, as runc makes them).
TEST_F(OciCli, RootParentsAreCreated) {
    const std::string root = _tmp.path() + "/run/containerd/runc/k8s.io";
    Result r = run({runc(), "--root", root, "list", "--format", "json"},
                   {{"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), json::array());
    struct stat st;
    ASSERT_EQ(::stat((_tmp.path() + "/run/containerd").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
    ASSERT_EQ(::stat(root.c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
}

// --- micro-VM containers (run.oci.handler: krun) -----------------------------------------
// Label vm (CMakeLists.txt runs OciCliVm.* apart): each test boots a qemu guest, seconds
// under TCG. The guest assets are kept in the build tree, shared with tests/krun.

// The host pids whose command line mentions `text` (a VMM or qemu of a bundle).
std::vector<int> processesMentioning(const std::string &text) {
    std::vector<int> out;
    for (const auto &e : std::filesystem::directory_iterator("/proc")) {
        const std::string name = e.path().filename();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmd = slurp(e.path() / "cmdline");
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        if (cmd.find(text) != std::string::npos && std::stoi(name) != ::getpid())
            out.push_back(std::stoi(name));
    }
    return out;
}

class OciCliVm : public OciCli {
protected:
    void SetUp() override {
        OciCli::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (run({"/bin/sh", "-c", "command -v qemu-system-x86_64"}).status != 0)
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
        std::ofstream(_tmp.path() + "/none.conf")
            << "[krun]\ndir = " MOBILEOPS_BINARY_DIR "/tests/krun/vm-cli\n";
        _config["annotations"] = {{"run.oci.handler", "krun"}};
        // As conmon and containerd-shim are: the init is reparented to us when create
        // exits, and we reap it.
        ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        _subreaper = true;
    }

    void TearDown() override {
        OciCli::TearDown();
        if (!_subreaper) return;
        ::prctl(PR_SET_CHILD_SUBREAPER, 0);
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        EXPECT_TRUE(processesMentioning(_bundle).empty()) << "a VMM or qemu was left running";
    }

    // `create` as conmon runs it: its stdout and stderr (the container's) go to files
    // that outlive the command, which returns while the init waits at its gate.
    int createTo(const std::string &id, const std::string &out) {
        pid_t pid = ::fork();
        if (pid == 0) {
            int devnull = ::open("/dev/null", O_RDONLY);
            int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
            ::dup2(devnull, 0);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::setenv("MOBILEOPS_CONFIG", (_tmp.path() + "/none.conf").c_str(), 1);
            std::string root = _tmp.path() + "/state", pidFile = _tmp.path() + "/" + id + ".pid";
            ::execl(runc().c_str(), "mobileops-runc", "--root", root.c_str(), "--log",
                    (_tmp.path() + "/log.json").c_str(), "create", "--bundle", _bundle.c_str(),
                    "--pid-file", pidFile.c_str(), id.c_str(), nullptr);
            ::_exit(127);
        }
        int status = 0;
        ::waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    // The init's exit status, reaped as its subreaper: 128+N for a signal.
    static int reap(int pid) {
        int status = 0;
        if (::waitpid(pid, &status, 0) != pid) return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    // The store's record (what `mobileops container inspect` shows with the same root).
    json record(const std::string &id) {
        Result r = run({dispatcher(), "container", "inspect", id},
                       {{"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"},
                        {"MOBILEOPS_ROOT", _tmp.path() + "/state"},
                        {"MOBILEOPS_RUN", _tmp.path() + "/state/run"}});
        EXPECT_EQ(r.status, 0) << r.err;
        json j = json::parse(r.out, nullptr, false);
        return j.is_discarded() ? json::object() : j;
    }

    bool _subreaper = false;
};

// What the spec asks of the process holds in the guest as in a namespace container:
// the capability sets, no_new_privs, the seccomp profile (compiled on the host, loaded
// by the guest's init), the umask, and the sysctls (written to the guest's own kernel).
TEST_F(OciCliVm, CapabilitiesSeccompUmaskAndSysctlsReachTheGuest) {
    const json two = {"CAP_KILL", "CAP_NET_RAW"};
    _config["process"]["capabilities"] = {
        {"bounding", two}, {"effective", two}, {"permitted", two}};
    _config["process"]["noNewPrivileges"] = true;
    _config["process"]["user"]["umask"] = 027;
    _config["linux"]["sysctl"] = {{"kernel.domainname", "oci-vm"}};
    _config["linux"]["seccomp"] = {
        {"defaultAction", "SCMP_ACT_ALLOW"},
        {"syscalls",
         {{{"names", {"mkdir", "mkdirat"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}}}}};
    setArgs({"/bin/sh", "-c",
             "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; umask; "
             "cat /proc/sys/kernel/domainname; mkdir /tmp/d 2>/dev/null; echo mkdir=$?"});
    const std::string out = _tmp.path() + "/out";
    ASSERT_EQ(createTo("v4", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    int pid = std::stoi(slurp(_tmp.path() + "/v4.pid"));
    ASSERT_EQ(oci({"start", "v4"}).status, 0);
    EXPECT_EQ(reap(pid), 0) << slurp(out);
    EXPECT_EQ(slurp(out), "CapEff:\t0000000000002020\n"
                          "CapBnd:\t0000000000002020\n"
                          "NoNewPrivs:\t1\n"
                          "Seccomp:\t2\n"
                          "0027\n"
                          "oci-vm\n"
                          "mkdir=1\n");
    EXPECT_EQ(oci({"delete", "v4"}).status, 0);
}

TEST_F(OciCliVm, CreateStartExitCodeToTheReaperAndDeleteLeavesNothing) {
    std::string given = _tmp.file("given", "from the host\n");
    _config["mounts"].push_back({{"destination", "/etc/given"},
                                 {"type", "bind"},
                                 {"source", given},
                                 {"options", {"rbind", "ro"}}});
    setArgs({"/bin/sh", "-c",
             "echo guest=$(uname -r); cat /etc/given; "
             "(echo x > /etc/given) 2>/dev/null || echo ro-refused; exit 3"});
    const std::string out = _tmp.path() + "/out";
    ASSERT_EQ(createTo("v1", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    int pid = std::stoi(slurp(_tmp.path() + "/v1.pid"));
    json s = state("v1");
    EXPECT_EQ(s["status"], "created");
    EXPECT_EQ(s["pid"], pid);
    EXPECT_EQ(slurp(out), "") << "the VM boots at start, not at create";

    Result r = oci({"start", "v1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(reap(pid), 3) << slurp(out);
    s = state("v1");
    EXPECT_EQ(s["status"], "stopped");
    EXPECT_EQ(s["pid"], 0);
    json rec = record("v1");
    EXPECT_EQ(rec.value("runtime", ""), "krun");
    EXPECT_EQ(rec.value("exit_code", -1), 3) << rec.dump();
    EXPECT_EQ(rec.value("signal", -1), 0) << rec.dump();

    // The guest's kernel, not the host's; the file bind and its ro reach the guest.
    std::string text = slurp(out);
    std::string host = run({"/bin/uname", "-r"}).out;
    EXPECT_NE(text.find("guest="), std::string::npos) << text;
    EXPECT_EQ(text.find("guest=" + host), std::string::npos) << text;
    EXPECT_NE(text.find("from the host\n"), std::string::npos) << text;
    EXPECT_NE(text.find("ro-refused"), std::string::npos) << text;
    EXPECT_EQ(slurp(given), "from the host\n");

    r = oci({"delete", "v1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(oci({"state", "v1"}).status, 1);
    std::error_code ec;
    EXPECT_TRUE(std::filesystem::is_empty(_tmp.path() + "/state/containers", ec)) << ec.message();
    EXPECT_TRUE(processesMentioning(_bundle).empty());
}

TEST_F(OciCliVm, KillPsPauseResumeAndTheSignalOfTheGuestProgram) {
    setArgs({"/bin/sh", "-c", "echo up; exec sleep 600"});
    const std::string out = _tmp.path() + "/out";
    ASSERT_EQ(createTo("v2", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    int pid = std::stoi(slurp(_tmp.path() + "/v2.pid"));
    ASSERT_EQ(oci({"start", "v2"}).status, 0);
    // a safety net for a guest booting under TCG, not a measure
    for (int i = 0; i < 1200 && slurp(out).find("up\n") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_NE(slurp(out).find("up\n"), std::string::npos) << slurp(out);

    // ps: the host's processes of the container, the VMM and qemu
    Result r = oci({"ps", "--format", "json", "v2"});
    ASSERT_EQ(r.status, 0) << r.err;
    json procs = json::parse(r.out);
    EXPECT_GE(procs.size(), 2u) << r.out;
    EXPECT_NE(std::find(procs.begin(), procs.end(), pid), procs.end()) << r.out;
    ASSERT_EQ(oci({"pause", "v2"}).status, 0);
    EXPECT_EQ(state("v2")["status"], "paused");
    ASSERT_EQ(oci({"resume", "v2"}).status, 0);
    EXPECT_EQ(state("v2")["status"], "running");
    // exec needs a guest agent
    r = oci({"exec", "v2", "true"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("micro-VM"), std::string::npos) << r.err;

    // TERM reaches the program in the guest through the VMM
    ASSERT_EQ(oci({"kill", "v2", "TERM"}).status, 0);
    EXPECT_EQ(reap(pid), 128 + SIGTERM) << slurp(out);
    EXPECT_EQ(state("v2")["status"], "stopped");
    json rec = record("v2");
    EXPECT_EQ(rec.value("exit_code", -1), 128 + SIGTERM) << rec.dump();
    EXPECT_EQ(rec.value("signal", -1), SIGTERM) << rec.dump();
    ASSERT_EQ(oci({"delete", "v2"}).status, 0);
}

TEST_F(OciCliVm, ForcedDeleteOfARunningVmAndATerminalRefused) {
    setArgs({"/bin/sh", "-c", "exec sleep 600"});
    const std::string out = _tmp.path() + "/out";
    ASSERT_EQ(createTo("v3", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    int pid = std::stoi(slurp(_tmp.path() + "/v3.pid"));
    ASSERT_EQ(oci({"start", "v3"}).status, 0);
    Result r = oci({"delete", "--force", "v3"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(reap(pid), 128 + SIGKILL);
    EXPECT_EQ(oci({"state", "v3"}).status, 1);
    EXPECT_TRUE(processesMentioning(_bundle).empty());

    // -t: the guest has no agent to hold a terminal yet; nothing is left behind
    _config["process"]["terminal"] = true;
    std::ofstream(_bundle + "/config.json") << _config.dump();
    r = oci(
        {"create", "--bundle", _bundle, "--console-socket", _tmp.path() + "/console.sock", "v4"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("terminal"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("micro-VM"), std::string::npos) << r.err;
    EXPECT_EQ(oci({"state", "v4"}).status, 1);
}

// A command the guest's root lacks fails `create` with a message (as podman shows it for
// a namespace container), not the start with 127; one below a volume is the guest's to
// find, and a symlink of the root resolves inside it (busybox's /bin/sh -> /bin/busybox).
TEST_F(OciCliVm, AMissingCommandFailsCreate) {
    setArgs({"nosuchprogram"});
    Result r = oci({"create", "--bundle", _bundle, "v5"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("exec `nosuchprogram`: not found in PATH"), std::string::npos) << r.err;
    EXPECT_EQ(oci({"state", "v5"}).status, 1);
    EXPECT_TRUE(processesMentioning(_bundle).empty());

    const std::string tools = _tmp.path() + "/tools";
    std::filesystem::create_directories(tools);
    _config["mounts"].push_back({{"destination", "/opt/tools"},
                                 {"type", "bind"},
                                 {"source", tools},
                                 {"options", {"rbind"}}});
    const std::string out = _tmp.path() + "/out";
    setArgs({"/opt/tools/later"});
    EXPECT_EQ(createTo("v6", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    EXPECT_EQ(oci({"delete", "--force", "v6"}).status, 0);
    setArgs({"sh", "-c", "true"});
    EXPECT_EQ(createTo("v7", out), 0) << slurp(out) << slurp(_tmp.path() + "/log.json");
    EXPECT_EQ(oci({"delete", "--force", "v7"}).status, 0);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    EXPECT_TRUE(processesMentioning(_bundle).empty());
}

} // namespace
} // namespace mobileops::test
