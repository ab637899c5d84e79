// podman (through conmon) and containerd (through containerd-shim-runc-v2) with
// mobileops-runc as their runtime. Everything is private to the test: podman gets a
// temporary store, run root and containers.conf (vfs storage: no overlay mount stays;
// cgroupfs; file events; no network), containerd a temporary root, state, socket and
// config (the native snapshotter). Images are a busybox rootfs from tools/make-rootfs.sh
// (`podman import`; an OCI layout built with umoci for containerd). Needs root.
//
// This host's bounding set lacks CAP_SYS_RESOURCE, so no rlimit may be raised above the
// caller's hard limit: podman's default nproc and nofile (1048576) would be refused (conmon
// runs the runtime with a hard nproc of 32768 here), so the containers.conf below sets
// default_ulimits well under them.
#include "TestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace mobileops::test {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// MOBILEOPS_OCI_TEST_RUNTIME=/usr/sbin/runc runs the same scenarios with a reference
// runtime, which shows the harness itself works.
std::string runc() {
    const char *other = std::getenv("MOBILEOPS_OCI_TEST_RUNTIME");
    return other && *other ? other : MOBILEOPS_BINARY_DIR "/bin/mobileops-runc";
}

bool executable(const std::string &path) { return ::access(path.c_str(), X_OK) == 0; }

// Whether the runtime provider implements runc's process model (create launches the
// init, held until start, and writes the pid file); without it no engine can use
// mobileops-runc. Probed: a container is created and its pid file looked for.
std::string probeRuncModel() {
    TempDir dir;
    std::map<std::string, std::string> env{{"MOBILEOPS_CONFIG", "/nonexistent"}};
    std::string root = dir.path() + "/state", bundle = dir.path() + "/b";
    ::mkdir(bundle.c_str(), 0755);
    Result r = run({MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh", bundle + "/rootfs"});
    if (r.status != 0) return "make-rootfs.sh failed: " + r.err;
    r = run({runc(), "--root", root, "spec", "--bundle", bundle}, env);
    if (r.status != 0) return "`mobileops-runc spec` failed: " + r.err;
    json config;
    std::ifstream(bundle + "/config.json") >> config;
    config["process"]["terminal"] = false;
    std::ofstream(bundle + "/config.json") << config.dump();
    r = run({runc(), "--root", root, "create", "--bundle", bundle, "--pid-file",
             dir.path() + "/pid", "probe"},
            env);
    struct stat st {};
    bool model = r.status == 0 && ::stat((dir.path() + "/pid").c_str(), &st) == 0;
    run({runc(), "--root", root, "delete", "--force", "probe"}, env);
    if (!model)
        return "the namespace runtime lacks runc's process model (create does not hand over a "
               "waiting init and its pid file): " +
               r.err;
    return "";
}

std::string runcModelMissing() {
    if (std::getenv("MOBILEOPS_OCI_TEST_RUNTIME")) return "";
    static const std::string why = probeRuncModel();
    return why;
}

// The base rootfs every engine test imports, built once per process.
const std::string &busyboxTar(const TempDir &tmp) {
    static std::string path;
    if (path.empty()) {
        std::string root = tmp.path() + "/image-rootfs";
        Result r = run({MOBILEOPS_SOURCE_DIR "/tools/make-rootfs.sh", root});
        EXPECT_EQ(r.status, 0) << r.err;
        r = run({"/usr/bin/tar", "-C", root, "-cf", tmp.path() + "/busybox.tar", "."});
        EXPECT_EQ(r.status, 0) << r.err;
        path = tmp.path() + "/busybox.tar";
    }
    return path;
}

// --- podman ------------------------------------------------------------------------------

class Podman : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root";
        if (!executable("/usr/bin/podman") || !executable("/usr/bin/conmon"))
            GTEST_SKIP() << "podman or conmon is not installed (tools/install-deps.sh)";
        if (std::string why = runcModelMissing(); !why.empty()) GTEST_SKIP() << why;
        _ownsLibpodParent = libpodParents().empty();
        _dir = _tmp.path();
        std::ofstream(_dir + "/containers.conf")
            << "[containers]\n"
            << "default_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n"
            << "netns = \"none\"\n"
            << "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
            << "[network]\nnetwork_config_dir = \"" << _dir << "/cni\"\n";
        // podman 4.3 does not hand --runtime-flag to the cleanup process it runs when a
        // container exits, so --root goes in a wrapper named as the runtime instead
        _runtime = _dir + "/runtime";
        std::ofstream(_runtime) << "#!/bin/sh\nexec " << runc() << " --root " << _dir
                                << "/runc --log-format json \"$@\"\n";
        ::chmod(_runtime.c_str(), 0755);
        Result r = podman({"import", busyboxTar(_images), "localhost/busybox:latest"});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    void TearDown() override {
        if (_dir.empty()) return;
        podman({"rm", "--all", "--force", "--time", "0"});
        podman({"rmi", "--all", "--force"});
        Result r = run({runc(), "--root", _dir + "/runc", "list", "--quiet"},
                       {{"MOBILEOPS_CONFIG", "/nonexistent"}});
        if (r.out.find("ID") == 0) r.out.clear(); // runc prints a header
        EXPECT_TRUE(r.out.empty()) << "mobileops-runc containers left: " << r.out;
        std::ifstream mounts("/proc/self/mountinfo");
        for (std::string line; std::getline(mounts, line);) {
            EXPECT_EQ(line.find(_dir), std::string::npos) << "mount left behind: " << line;
            if (line.find(_dir) != std::string::npos) {
                std::istringstream in(line);
                std::string f;
                for (int i = 0; i < 5; ++i) in >> f;
                run({"/usr/bin/umount", "-l", f});
            }
        }
        // podman (cgroupfs) makes /libpod_parent and /libpod_parent/conmon in every
        // hierarchy; the containers' cgroups below it (cgroupsPath) are the runtime's to
        // remove at delete. What podman made is removed when it was not there before.
        for (const std::string &parent : libpodParents())
            for (const auto &c : fs::directory_iterator(parent))
                if (c.is_directory() && c.path().filename() != "conmon")
                    ADD_FAILURE() << "cgroup left behind: " << c.path();
        if (!_ownsLibpodParent) return;
        // The last conmon may still be on its way out (EBUSY): wait for it, 10 s at most.
        for (int i = 0; i < 100 && !libpodParents().empty(); ++i) {
            for (const std::string &parent : libpodParents()) {
                ::rmdir((parent + "/conmon").c_str());
                ::rmdir(parent.c_str());
            }
            if (!libpodParents().empty())
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        for (const std::string &parent : libpodParents())
            ADD_FAILURE() << "podman's cgroup left behind: " << parent;
    }

    // podman's cgroup parent in each hierarchy where it exists.
    static std::vector<std::string> libpodParents() {
        std::vector<std::string> out;
        std::error_code ec;
        for (const auto &h : fs::directory_iterator("/sys/fs/cgroup", ec))
            if (fs::is_directory(h.path() / "libpod_parent"))
                out.push_back((h.path() / "libpod_parent").string());
        if (fs::is_directory("/sys/fs/cgroup/libpod_parent")) // a cgroup2-only host
            out.push_back("/sys/fs/cgroup/libpod_parent");
        return out;
    }

    Result podman(const std::vector<std::string> &args) {
        std::vector<std::string> argv{"/usr/bin/podman",
                                      "--root",
                                      _dir + "/storage",
                                      "--runroot",
                                      _dir + "/runroot",
                                      "--tmpdir",
                                      _dir + "/tmp",
                                      "--storage-driver",
                                      "vfs",
                                      "--cgroup-manager",
                                      "cgroupfs",
                                      "--events-backend",
                                      "file",
                                      "--runtime",
                                      _runtime};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, {{"CONTAINERS_CONF", _dir + "/containers.conf"},
                          {"MOBILEOPS_CONFIG", "/nonexistent"}});
    }

    Result podmanRun(const std::vector<std::string> &args) {
        std::vector<std::string> argv{"run", "--network", "none"};
        argv.insert(argv.end(), args.begin(), args.end());
        return podman(argv);
    }

    TempDir _tmp;
    static TempDir _images;
    std::string _dir, _runtime;
    bool _ownsLibpodParent = false;
};

TempDir Podman::_images;

TEST_F(Podman, RunRmEcho) {
    Result r = podmanRun({"--rm", "localhost/busybox", "echo", "hi"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hi\n");
}

TEST_F(Podman, ExitCodePropagates) {
    Result r = podmanRun({"--rm", "localhost/busybox", "sh", "-c", "exit 42"});
    EXPECT_EQ(r.status, 42) << r.err;
}

TEST_F(Podman, MissingCommandIsReportedFromTheRuntimesLog) {
    // create fails (the command is looked up before the gate); podman reads the message
    // and exits 127 as it does with runc
    Result r = podmanRun({"--rm", "localhost/busybox", "no-such-command"});
    EXPECT_EQ(r.status, 127) << r.err;
    EXPECT_NE(r.err.find("no-such-command"), std::string::npos) << r.err;
}

TEST_F(Podman, DetachedPsLogsStopRm) {
    Result r = podmanRun(
        {"-d", "--name", "web", "localhost/busybox", "sh", "-c", "echo started; exec sleep 600"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = podman({"ps", "--format", "{{.Names}} {{.Status}}"});
    EXPECT_NE(r.out.find("web Up"), std::string::npos) << r.out << r.err;
    r = podman({"logs", "web"});
    EXPECT_EQ(r.out, "started\n") << r.err;
    r = podman({"stop", "--time", "2", "web"});
    EXPECT_EQ(r.status, 0) << r.err;
    r = podman({"inspect", "--format", "{{.State.Status}}", "web"});
    EXPECT_EQ(r.out, "exited\n") << r.err;
    r = podman({"rm", "web"});
    EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(Podman, Exec) {
    ASSERT_EQ(podmanRun({"-d", "--name", "ex", "localhost/busybox", "sleep", "600"}).status, 0);
    Result r = podman({"exec", "ex", "sh", "-c", "echo in; exit 5"});
    EXPECT_EQ(r.status, 5) << r.err;
    EXPECT_EQ(r.out, "in\n");
}

TEST_F(Podman, ExecWithATerminal) {
    // conmon runs `exec --detach --console-socket S --tty`: the pty goes over the socket
    ASSERT_EQ(podmanRun({"-d", "--name", "ext", "localhost/busybox", "sleep", "600"}).status, 0);
    Result r = podman({"exec", "-t", "ext", "sh", "-c", "[ -t 1 ] && echo is-a-tty"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "is-a-tty\r\n");
}

TEST_F(Podman, PauseUnpause) {
    ASSERT_EQ(podmanRun({"-d", "--name", "pz", "localhost/busybox", "sleep", "600"}).status, 0);
    ASSERT_EQ(podman({"pause", "pz"}).status, 0);
    EXPECT_EQ(podman({"inspect", "--format", "{{.State.Status}}", "pz"}).out, "paused\n");
    ASSERT_EQ(podman({"unpause", "pz"}).status, 0);
    EXPECT_EQ(podman({"inspect", "--format", "{{.State.Status}}", "pz"}).out, "running\n");
}

// The kernel's value of a v1 controller's file for a pid (hybrid and v1 hosts), or of the
// unified hierarchy's.
std::string cgroupValue(int pid, const std::string &controller, const std::string &v1,
                        const std::string &v2) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string unified;
    for (std::string line; std::getline(in, line);) {
        auto a = line.find(':'), b = line.find(':', a + 1);
        std::string names = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        if (names == controller) {
            std::ifstream f("/sys/fs/cgroup/" + controller + path + "/" + v1);
            std::string v;
            std::getline(f, v);
            return v;
        }
        if (names.empty()) unified = path;
    }
    std::ifstream f("/sys/fs/cgroup" + unified + "/" + v2);
    std::string v;
    std::getline(f, v);
    return v;
}

TEST_F(Podman, MemoryAndPidsLimit) {
    Result r = podmanRun({"-d", "--name", "lim", "--memory", "64m", "--pids-limit", "50",
                          "localhost/busybox", "sleep", "600"});
    ASSERT_EQ(r.status, 0) << r.err;
    r = podman({"inspect", "--format", "{{.State.Pid}}", "lim"});
    int pid = std::atoi(r.out.c_str());
    ASSERT_GT(pid, 0) << r.out << r.err;
    EXPECT_EQ(cgroupValue(pid, "memory", "memory.limit_in_bytes", "memory.max"), "67108864");
    EXPECT_EQ(cgroupValue(pid, "pids", "pids.max", "pids.max"), "50");
    // and from inside: podman's `cgroup` mount on /sys/fs/cgroup (read-only) shows the
    // container's own cgroups as the roots of the hierarchies
    r = podman({"exec", "lim", "sh", "-c",
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max "
                "/sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null; true"});
    EXPECT_NE(r.out.find("67108864\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("50\n"), std::string::npos) << r.out;
    r = podman({"exec", "lim", "sh", "-c",
                "ls -d /sys/fs/cgroup/libpod_parent /sys/fs/cgroup/*/libpod_parent 2>/dev/null; "
                "echo 1 > /sys/fs/cgroup/pids/pids.max || echo 1 > /sys/fs/cgroup/pids.max || "
                "echo refused"});
    EXPECT_EQ(r.out, "refused\n") << r.out << r.err;
    EXPECT_EQ(cgroupValue(pid, "pids", "pids.max", "pids.max"), "50");
}

TEST_F(Podman, BindMount) {
    ::mkdir((_tmp.path() + "/shared").c_str(), 0755);
    std::ofstream(_tmp.path() + "/shared/hello.txt") << "from-host\n";
    Result r = podmanRun(
        {"--rm", "-v", _tmp.path() + "/shared:/data:ro", "localhost/busybox", "sh", "-c",
         "cat /data/hello.txt; touch /data/x 2>/dev/null && echo writable || echo read-only"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "from-host\nread-only\n");
}

TEST_F(Podman, ReadOnlyRoot) {
    Result r = podmanRun({"--rm", "--read-only", "localhost/busybox", "sh", "-c",
                          "touch /etc/x 2>/dev/null && echo wrote || echo refused"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "refused\n");
}

TEST_F(Podman, CapDrop) {
    Result r = podmanRun({"--rm", "--cap-drop", "ALL", "--cap-add", "CHOWN", "localhost/busybox",
                          "grep", "CapEff", "/proc/self/status"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "CapEff:\t0000000000000001\n");
}

TEST_F(Podman, Tty) {
    // -t: conmon hands a console socket; the container's stdio is the pty's slave
    Result r = podmanRun({"--rm", "-t", "localhost/busybox", "sh", "-c",
                          "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; tty"});
    EXPECT_EQ(r.status, 0) << r.err;
    // the container's own devpts's terminal, as with runc
    EXPECT_EQ(r.out, "is-a-tty\r\n/dev/pts/0\r\n") << r.out;
}

// Readlink of our own namespace of `type` ("pid:[4026531836]").
std::string ownNamespace(const char *type) {
    char buf[64] = {};
    ssize_t n = ::readlink((std::string("/proc/self/ns/") + type).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("?");
}

TEST_F(Podman, HostNamespacesAreShared) {
    // --pid/--ipc/--uts host leave the namespace out of config.json: the container is in ours
    Result r =
        podmanRun({"--rm", "--pid", "host", "--ipc", "host", "--uts", "host", "localhost/busybox",
                   "sh", "-c", "for n in pid ipc uts; do readlink /proc/self/ns/$n; done"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out,
              ownNamespace("pid") + "\n" + ownNamespace("ipc") + "\n" + ownNamespace("uts") + "\n");
    // and without those flags, namespaces of its own
    r = podmanRun({"--rm", "localhost/busybox", "readlink", "/proc/self/ns/pid"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out, ownNamespace("pid") + "\n");
}

// --- podman with a micro-VM (run.oci.handler: krun) -----------------------------------
// Label vm (CMakeLists.txt runs *Vm.* apart): boots a qemu guest under TCG. The guest
// assets are kept in the build tree, shared with tests/krun and OciCliVm.

// Whether a qemu process whose command line mentions `text` is running.
bool qemuMentioning(const std::string &text) {
    for (const auto &e : fs::directory_iterator("/proc")) {
        std::ifstream in(e.path() / "cmdline");
        std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (cmd.find("qemu-system") == 0 && cmd.find(text) != std::string::npos) return true;
    }
    return false;
}

class PodmanVm : public Podman {
protected:
    void SetUp() override {
        Podman::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        if (std::getenv("MOBILEOPS_OCI_TEST_RUNTIME"))
            GTEST_SKIP() << "run.oci.handler=krun is this runtime's (and crun's), not runc's";
        if (run({"/bin/sh", "-c", "command -v qemu-system-x86_64"}).status != 0)
            GTEST_SKIP() << "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)";
        // the wrapper podman runs as its runtime, now with the krun configuration
        std::ofstream(_dir + "/mobileops.conf")
            << "[krun]\ndir = " MOBILEOPS_BINARY_DIR "/tests/krun/vm-cli\n";
        std::ofstream(_runtime) << "#!/bin/sh\nMOBILEOPS_CONFIG=" << _dir << "/mobileops.conf exec "
                                << runc() << " --root " << _dir
                                << "/runc --log-format json \"$@\"\n";
    }
};

TEST_F(PodmanVm, RunRmPrintsTheGuestKernelAndReturnsTheExitCode) {
    Result r = podmanRun({"--rm", "--annotation", "run.oci.handler=krun", "localhost/busybox", "sh",
                          "-c", "uname -r; exit 3"});
    EXPECT_EQ(r.status, 3) << r.err;
    std::string host = run({"/bin/uname", "-r"}).out;
    EXPECT_FALSE(r.out.empty()) << r.err;
    EXPECT_NE(r.out, host) << "the guest's kernel prints its release, not the host's";
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line: " << r.out;
    EXPECT_FALSE(qemuMentioning(_dir)) << "qemu left running";

    // As with a namespace container: create fails, podman shows why and exits 127.
    r = podmanRun(
        {"--rm", "--annotation", "run.oci.handler=krun", "localhost/busybox", "no-such-command"});
    EXPECT_EQ(r.status, 127) << r.err;
    EXPECT_NE(r.err.find("no-such-command"), std::string::npos) << r.err;
}

// --- containerd ----------------------------------------------------------------------------

class Containerd : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root";
        for (const char *b : {"/usr/bin/containerd", "/usr/bin/ctr",
                              "/usr/bin/containerd-shim-runc-v2", "/usr/bin/umoci"})
            if (!executable(b)) GTEST_SKIP() << b << " is not installed (tools/install-deps.sh)";
        if (std::string why = runcModelMissing(); !why.empty()) GTEST_SKIP() << why;
        // ctr and the shim make /run/containerd (fifo/, s/): removed after us if it was not there
        _hadRunDir = ::access("/run/containerd", F_OK) == 0;
        // short paths: the shim's socket path must fit in sun_path
        char tmpl[] = "/tmp/mo-ctd-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        _dir = tmpl;
        std::ofstream(_dir + "/config.toml")
            << "version = 2\nroot = \"" << _dir << "/root\"\nstate = \"" << _dir << "/state\"\n"
            << "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
            << "[grpc]\naddress = \"" << _dir << "/ctd.sock\"\n"
            << "[ttrpc]\naddress = \"" << _dir << "/ctd.sock.ttrpc\"\n";
        _pid = ::fork();
        if (_pid == 0) {
            int fd = ::open((_dir + "/containerd.log").c_str(), O_WRONLY | O_CREAT, 0600);
            ::dup2(fd, 1);
            ::dup2(fd, 2);
            ::setpgid(0, 0);
            ::execl("/usr/bin/containerd", "containerd", "--config",
                    (_dir + "/config.toml").c_str(), nullptr);
            ::_exit(127);
        }
        bool up = false;
        for (int i = 0; i < 300 && !up; ++i) {
            up = ctr({"version"}).status == 0;
            if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ASSERT_TRUE(up) << "containerd did not come up";
        ASSERT_NO_FATAL_FAILURE(importImage());
    }

    void TearDown() override {
        if (_dir.empty()) return;
        if (_pid > 0) {
            Result r = ctr({"tasks", "list", "-q"});
            std::istringstream ids(r.out);
            for (std::string id; std::getline(ids, id);) {
                ctr({"tasks", "kill", "-s", "KILL", id});
                ctr({"tasks", "delete", "-f", id});
            }
            r = ctr({"containers", "list", "-q"});
            std::istringstream cs(r.out);
            for (std::string id; std::getline(cs, id);) ctr({"containers", "delete", id});
            ::kill(-_pid, SIGTERM);
            int status = 0;
            ::waitpid(_pid, &status, 0);
        }
        // shims outlive containerd; they exit once their task is deleted
        std::ifstream mounts("/proc/self/mountinfo");
        std::vector<std::string> left;
        for (std::string line; std::getline(mounts, line);)
            if (line.find(_dir) != std::string::npos) {
                ADD_FAILURE() << "mount left behind: " << line;
                std::istringstream in(line);
                std::string f;
                for (int i = 0; i < 5; ++i) in >> f;
                left.push_back(f);
            }
        for (auto it = left.rbegin(); it != left.rend(); ++it) run({"/usr/bin/umount", "-l", *it});
        run({"/usr/bin/rm", "-rf", _dir});
        if (!_hadRunDir) run({"/usr/bin/rm", "-rf", "/run/containerd"});
    }

    Result ctr(const std::vector<std::string> &args) {
        std::vector<std::string> argv{"/usr/bin/ctr", "--address", _dir + "/ctd.sock",
                                      "--namespace", "motest"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, {{"MOBILEOPS_CONFIG", "/nonexistent"}});
    }

    // An OCI image of the busybox rootfs: umoci layout, one layer, tarred.
    void importImage() {
        std::string layout = _dir + "/layout";
        Result r = run({"/usr/bin/umoci", "init", "--layout", layout});
        ASSERT_EQ(r.status, 0) << r.err;
        ASSERT_EQ(run({"/usr/bin/umoci", "new", "--image", layout + ":latest"}).status, 0);
        ASSERT_EQ(run({"/usr/bin/umoci", "unpack", "--image", layout + ":latest", _dir + "/unpack"})
                      .status,
                  0);
        r = run({"/usr/bin/tar", "-C", _dir + "/unpack/rootfs", "-xf", busyboxTar(_images)});
        ASSERT_EQ(r.status, 0) << r.err;
        r = run({"/usr/bin/umoci", "repack", "--image", layout + ":latest", _dir + "/unpack"});
        ASSERT_EQ(r.status, 0) << r.err;
        r = run({"/usr/bin/umoci", "config", "--image", layout + ":latest", "--config.cmd", "sh"});
        ASSERT_EQ(r.status, 0) << r.err;
        r = run({"/usr/bin/tar", "-C", layout, "-cf", _dir + "/image.tar", "."});
        ASSERT_EQ(r.status, 0) << r.err;
        r = ctr({"images", "import", "--base-name", "localhost/busybox", "--snapshotter", "native",
                 _dir + "/image.tar"});
        ASSERT_EQ(r.status, 0) << r.out << r.err;
        r = ctr({"images", "list", "-q"});
        ASSERT_NE(r.out.find("localhost/busybox:latest"), std::string::npos) << r.out;
    }

    Result ctrRun(const std::vector<std::string> &args) {
        // the runtime's state under our directory, not /run/containerd/runc/<namespace>
        std::vector<std::string> argv{"run",  "--snapshotter", "native",       "--runc-binary",
                                      runc(), "--runc-root",   _dir + "/runc", "--rm"};
        argv.insert(argv.end(), args.begin(), args.end());
        return ctr(argv);
    }

    TempDir _images;
    std::string _dir;
    pid_t _pid = -1;
    bool _hadRunDir = true;
};

TEST_F(Containerd, RunRmEcho) {
    Result r = ctrRun({"localhost/busybox:latest", "echo1", "echo", "hi"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "hi\n");
}

TEST_F(Containerd, ExitCodePropagates) {
    Result r = ctrRun({"localhost/busybox:latest", "exit1", "sh", "-c", "exit 42"});
    EXPECT_EQ(r.status, 42) << r.err;
}

} // namespace
} // namespace mobileops::test
