#include "Qemu.h"

#include "Job.h"
#include "Supervise.h"
#include "protocol.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

extern char **environ;

namespace mobileops::krun {

namespace {

namespace fs = std::filesystem;
using common::quote;
using common::sysError;
using sdk::Error;
using Clock = std::chrono::steady_clock;

// Where qemu finds the program's stdout and stderr (pipes, written) and the control
// channel (a connected stream socket): qemuCommand's contract with launch(), and with
// anyone who runs the command by hand (e.g. `3>out 4>err` and a socket on 5).
constexpr int kStdoutFd = 3, kStderrFd = 4, kControlFd = 5;
// microvm has eight virtio-mmio slots; the job share, the root share and the
// virtio-serial device take three of them.
constexpr size_t kMaxVolumes = 5;
constexpr uint64_t kMinMemory = 64ull << 20;
constexpr auto kProbeTimeout = std::chrono::seconds(10);
constexpr size_t kTailLines = 20;
// Each pipe on the way out (qemu -> relay -> caller). The ports are flow-controlled, so
// the size is a matter of throughput, not of loss.
constexpr int kPipeSize = 256 << 10;
constexpr const char *kQemuBinary = "qemu-system-x86_64";
// No option ROMs to load. The ISA serial port carries the console and the exit marker.
// The RTC stays: without it the kernel waits a second twice (reading the time, probing
// rtc_cmos), more than half of a TCG boot. Turning the PIT and PIC off gained nothing
// measurable, and the PIT is what a TCG guest calibrates against when no TSC hint is known.
constexpr const char *kMachine = "microvm,x-option-roms=off,isa-serial=on";
constexpr const char *kKernelArgs = "console=ttyS0 reboot=t panic=-1 quiet loglevel=3";

std::string jobDir(const std::string &workDir) { return workDir + "/job"; }
std::string consoleLog(const std::string &workDir) { return workDir + "/console.log"; }
std::string qemuLog(const std::string &workDir) { return workDir + "/qemu.log"; }

// qemu's option syntax: a comma inside a value is doubled.
std::string optionValue(const std::string &value) {
    std::string out;
    for (char c : value) {
        out += c;
        if (c == ',') out += ',';
    }
    return out;
}

std::string readFile(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// The last `n` lines of `text`, without a trailing newline.
std::string tail(const std::string &text, size_t n) {
    size_t end = text.size();
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r')) --end;
    size_t start = end;
    for (size_t lines = 0; start > 0; --start)
        if (text[start - 1] == '\n' && ++lines == n) break;
    std::string out;
    for (size_t i = start; i < end; ++i)
        if (text[i] != '\r') out += text[i];
    return out;
}

std::string seconds(Clock::duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
    return buf;
}

// ---- the host's TSC frequency --------------------------------------------------------

struct Tsc {
    unsigned long khz = 0;
    std::string source;
};

unsigned long mhzToKhz(const std::string &text) {
    char *end = nullptr;
    double mhz = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !(mhz > 0)) return 0;
    return static_cast<unsigned long>(std::lround(mhz * 1000));
}

// The number before `suffix` in `line`, after `prefix`.
unsigned long mhzBetween(const std::string &line, const std::string &prefix) {
    size_t at = line.find(prefix);
    if (at == std::string::npos) return 0;
    return mhzToKhz(line.substr(at + prefix.size()));
}

Tsc tscFromSysfs() {
    const char *path = "/sys/devices/system/cpu/cpu0/tsc_freq_khz";
    std::string text = readFile(path);
    unsigned long khz = std::strtoul(text.c_str(), nullptr, 10);
    return {khz, path};
}

// The kernel's own calibration, while its boot messages are still in the ring buffer.
Tsc tscFromKmsg() {
    common::Fd fd(::open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (fd.fd < 0) return {};
    unsigned long detected = 0, refined = 0;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.fd, buf, sizeof buf - 1);
        if (n < 0 && (errno == EINTR || errno == EPIPE)) continue; // EPIPE: record overwritten
        if (n <= 0) break;
        std::string record(buf, static_cast<size_t>(n));
        if (!refined) refined = mhzBetween(record, "Refined TSC clocksource calibration: ");
        if (!detected) detected = mhzBetween(record, "tsc: Detected ");
        if (refined) break;
    }
    if (refined) return {refined, "the kernel log (refined TSC calibration)"};
    return {detected, "the kernel log (TSC detected)"};
}

// The current clock rather than the TSC's on hosts that scale it: the last resort.
Tsc tscFromCpuinfo() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("cpu MHz", 0) == 0) {
            size_t colon = line.find(':');
            if (colon != std::string::npos)
                return {mhzToKhz(line.substr(colon + 1)), "/proc/cpuinfo (cpu MHz)"};
        }
    return {};
}

const Tsc &hostTsc() {
    static const Tsc tsc = [] {
        for (auto source : {tscFromSysfs, tscFromKmsg, tscFromCpuinfo}) {
            Tsc t = source();
            if (t.khz) return t;
        }
        return Tsc{};
    }();
    return tsc;
}

// ---- the command line ----------------------------------------------------------------

void validateMachine(const VmConfig &config, const Accel &accel) {
    if (accel.name != "kvm" && accel.name != "tcg")
        throw Error(MO_E_INVALID,
                    "vm: unknown accelerator " + quote(accel.name) + " (expected `kvm` or `tcg`)");
    if (config.vcpus < 1) throw Error(MO_E_INVALID, "vm: vcpus must be at least 1");
    if (config.memory < kMinMemory)
        throw Error(MO_E_INVALID, "vm: memory " +
                                      quote(std::to_string(config.memory >> 20) + "Mi") +
                                      " is below the 64Mi a guest needs");
    if (config.timeout.count() <= 0) throw Error(MO_E_INVALID, "vm: timeout must be positive");
    if (config.rootfs.empty()) throw Error(MO_E_INVALID, "vm: no root filesystem");
    if (config.workDir.empty()) throw Error(MO_E_INVALID, "vm: no work directory");
    if (config.mounts.size() > kMaxVolumes)
        throw Error(MO_E_INVALID, "vm: " + std::to_string(config.mounts.size()) +
                                      " volumes, a qemu micro-VM takes at most " +
                                      std::to_string(kMaxVolumes) +
                                      " (eight virtio-mmio slots, three in use)");
}

std::string kernelCommandLine(bool kvm) {
    std::string line = kKernelArgs;
    // A TCG guest calibrating its TSC against emulated timers can take seconds or hang.
    // TCG's rdtsc reads the host's TSC, so the vCPUs agree; without tsc=reliable the
    // kernel's sync check misjudges them and falls back to a jiffies clock.
    if (!kvm && hostTsc().khz)
        line += " tsc_early_khz=" + std::to_string(hostTsc().khz) + " tsc=reliable";
    return line;
}

void addShare(std::vector<std::string> &cmd, const std::string &tag, const std::string &path,
              bool readOnly) {
    // passthrough: the guest sees (and, as root, sets) the files' real owners and modes;
    // remap: the root may span several host filesystems without inode clashes.
    cmd.insert(cmd.end(), {"-fsdev",
                           "local,id=" + tag + ",path=" + optionValue(path) +
                               ",security_model=passthrough,multidevs=remap" +
                               (readOnly ? ",readonly=on" : ""),
                           "-device", "virtio-9p-device,fsdev=" + tag + ",mount_tag=" + tag});
}

// ---- spawning ------------------------------------------------------------------------

// File descriptors closed together when they go out of scope.
struct FdList {
    std::vector<int> fds;
    ~FdList() {
        for (int fd : fds) ::close(fd);
    }
};

// Everything the child needs between fork and exec, prepared before the fork: the child
// of a threaded process may only make async-signal-safe calls.
struct ExecPlan {
    std::vector<char *> argv;
    pid_t parent = -1;
    int log = -1;
    const std::vector<int> *fds = nullptr; // placed on 3, 4, 5, ...
    int firstFree = 3;
    int report = -1;  // the exec's errno goes here when it fails
    sigset_t blocked; // qemu's signal mask
};

[[noreturn]] void reportExecFailure(int report, int err) {
    ssize_t ignored = ::write(report, &err, sizeof err);
    (void)ignored;
    ::_exit(127);
}

[[noreturn]] void execQemu(const ExecPlan &plan) {
    auto fail = [&](int err) { reportExecFailure(plan.report, err); };
    // qemu must not outlive its launcher; a launcher that died before this line is seen
    // by getppid (the child was reparented).
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
    if (::getppid() != plan.parent) ::_exit(127);
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr); // EINVAL: libc's
    // Its own process group: a ^C at our terminal is ours to forward, not qemu's to take.
    if (::setpgid(0, 0) != 0) fail(errno);
    int null = ::open("/dev/null", O_RDONLY);
    if (null < 0) fail(errno);
    if (null != 0 && (::dup2(null, 0) < 0 || ::close(null) != 0)) fail(errno);
    if (::dup2(plan.log, 1) < 0 || ::dup2(plan.log, 2) < 0) fail(errno);
    for (size_t i = 0; i < plan.fds->size(); ++i)
        if (::dup2((*plan.fds)[i], 3 + static_cast<int>(i)) < 0) fail(errno);
    // Nothing else of ours survives the exec (the report pipe must stay open until then).
    if (::close_range(static_cast<unsigned>(plan.firstFree), ~0U, CLOSE_RANGE_CLOEXEC) != 0)
        fail(errno);
    // The signals a `kill --all` sends the whole container are the program's: the
    // launcher forwards them into the guest. qemu keeps them blocked (pending, and
    // dropped when it exits), or SIGTERM would end the VM before the program saw it, and
    // no exit status would come back. SIGKILL still ends it.
    ::sigprocmask(SIG_SETMASK, &plan.blocked, nullptr);
    ::execve(plan.argv[0], plan.argv.data(), environ);
    reportExecFailure(plan.report, errno);
}

// qemu with stdin /dev/null, stdout and stderr to `log`, and `fds` on 3, 4, 5, ...;
// nothing else of ours open; its own process group; default signal dispositions, the
// forwarded signals (Supervise.h) blocked; killed when the calling thread dies.
pid_t spawn(const std::vector<std::string> &argv, int log, const std::vector<int> &fds) {
    ExecPlan plan;
    // Copies above every target, so no dup2 overwrites a source a later one still needs.
    plan.firstFree = 3 + static_cast<int>(fds.size());
    FdList lifted;
    for (int fd : fds) {
        lifted.fds.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, plan.firstFree));
        if (lifted.fds.back() < 0) throw sysError("start qemu: dup", errno);
    }
    std::vector<int> sources = lifted.fds;
    plan.fds = &sources;
    plan.log = ::fcntl(log, F_DUPFD_CLOEXEC, plan.firstFree);
    if (plan.log < 0) throw sysError("start qemu: dup", errno);
    lifted.fds.push_back(plan.log);
    int report[2];
    if (::pipe2(report, O_CLOEXEC) != 0) throw sysError("start qemu: pipe", errno);
    common::Fd reportRead(report[0]), reportWrite(report[1]);
    plan.report = reportWrite.fd;
    for (const auto &a : argv) plan.argv.push_back(const_cast<char *>(a.c_str()));
    plan.argv.push_back(nullptr);
    plan.parent = ::getpid();
    plan.blocked = forwardedSignals();

    // No handler of ours may run in the child before it resets the dispositions.
    sigset_t all, old;
    sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = ::fork();
    if (pid == 0) execQemu(plan);
    int forkError = errno;
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) throw sysError("start " + quote(argv[0]) + ": fork", forkError);

    ::close(std::exchange(reportWrite.fd, -1));
    int execError = 0;
    ssize_t n;
    while ((n = ::read(reportRead.fd, &execError, sizeof execError)) < 0 && errno == EINTR) {
    }
    if (n <= 0) return pid; // the exec closed the pipe
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    throw sysError("start " + quote(argv[0]), n == sizeof execError ? execError : EIO);
}

void requireDirectory(const std::string &path, const std::string &what) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) throw sysError("vm: " + what + " " + quote(path), errno);
    if (!S_ISDIR(st.st_mode))
        throw Error(MO_E_INVALID, "vm: " + what + " " + quote(path) +
                                      " is not a directory (a VM shares directories only)");
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// ---- the result ----------------------------------------------------------------------

// The report after the last exit marker on the console (a guest prints one).
std::optional<ExitReport> consoleExitReport(const std::string &console) {
    size_t at = console.rfind(MO_EXIT_MARKER);
    if (at == std::string::npos) return std::nullopt;
    return parseExitReport(std::string_view(console).substr(at + std::strlen(MO_EXIT_MARKER)));
}

std::string describeReport(const ExitReport &r) {
    return std::to_string(r.code) + (r.signal ? " (signal " + std::to_string(r.signal) + ")" : "");
}

// Why the guest init gave up, when the line before its exit marker says so: a setup
// failure is then an error with its reason, not a program that exited 125.
std::optional<std::string> setupFailure(const std::string &console) {
    static const std::string prefix = "mobileops-init: ";
    size_t marker = console.rfind(MO_EXIT_MARKER);
    std::string before = tail(console.substr(0, marker), 1);
    if (before.rfind(prefix, 0) != 0) return std::nullopt;
    return before.substr(prefix.size());
}

std::string describeStatus(int raw) {
    if (WIFSIGNALED(raw)) return "qemu killed by signal " + std::to_string(WTERMSIG(raw));
    return "qemu exited with status " + std::to_string(WEXITSTATUS(raw));
}

// What explains a failed guest: the console's last lines and what qemu said.
std::string diagnostics(const std::string &workDir, const std::string &console) {
    std::string out;
    std::string lines = tail(console, kTailLines);
    out += lines.empty() ? "; the console is empty" : "; last console lines:\n" + lines;
    std::string qemu = tail(readFile(qemuLog(workDir)), 5);
    if (!qemu.empty()) out += "\nqemu: " + qemu;
    return out;
}

// ---- the acceleration probe ----------------------------------------------------------

Accel tcg(const std::string &why) {
    const Tsc &tsc = hostTsc();
    std::string note = tsc.khz ? "; TCG guests get tsc_early_khz=" + std::to_string(tsc.khz) +
                                     " from " + tsc.source
                               : "; the host's TSC frequency is unknown";
    return {"tcg", why + note};
}

int64_t mtimeOf(const std::string &path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return -1;
    return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

nlohmann::json probeKey(const GuestAssets &assets, const std::string &qemu, dev_t kvm) {
    return {{"kernel", assets.kernel},
            {"kernelMtime", mtimeOf(assets.kernel)},
            {"initramfs", assets.initramfs},
            {"initramfsMtime", mtimeOf(assets.initramfs)},
            {"qemu", qemu},
            {"qemuMtime", mtimeOf(qemu)},
            {"kvmRdev", static_cast<uint64_t>(kvm)}};
}

std::optional<Accel> cachedVerdict(const std::string &cacheFile, const nlohmann::json &key) {
    auto doc = nlohmann::json::parse(readFile(cacheFile), nullptr, false);
    if (!doc.is_object() || doc.value("key", nlohmann::json()) != key) return std::nullopt;
    std::string name = doc.value("accel", ""), why = doc.value("why", "");
    if (name != "kvm" && name != "tcg") return std::nullopt;
    return Accel{name, why};
}

// Best effort: a verdict that cannot be cached only costs the next caller a probe.
void cacheVerdict(const std::string &cacheFile, const nlohmann::json &key, const Accel &accel) {
    std::error_code ec;
    fs::create_directories(fs::path(cacheFile).parent_path(), ec);
    std::string tmp = cacheFile + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << nlohmann::json{{"key", key}, {"accel", accel.name}, {"why", accel.why}}.dump(2)
            << "\n";
        if (!out) return;
    }
    if (::rename(tmp.c_str(), cacheFile.c_str()) != 0) ::unlink(tmp.c_str());
}

struct ProbeDir {
    std::string path;
    explicit ProbeDir(const std::string &parent) {
        std::error_code ec;
        fs::create_directories(parent, ec);
        std::string tmpl = parent + "/probe-XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw sysError("kvm probe: mkdtemp " + quote(tmpl), errno);
        path = tmpl;
    }
    ~ProbeDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A guest with an empty root and a program that is not there: whatever code init
// reports (127), it booted, and that is the question.
Accel bootProbe(const GuestAssets &assets, const std::string &cacheFile) {
    std::string parent = fs::path(cacheFile).parent_path().string();
    ProbeDir dir(parent.empty() ? "." : parent);
    VmConfig probe;
    probe.rootfs = dir.path + "/root";
    if (::mkdir(probe.rootfs.c_str(), 0755) != 0)
        throw sysError("kvm probe: mkdir " + quote(probe.rootfs), errno);
    probe.args = {"/bin/true"};
    probe.vcpus = 1;
    probe.memory = 128ull << 20;
    probe.timeout = kProbeTimeout;
    probe.workDir = dir.path;
    auto start = Clock::now();
    std::string failure;
    try {
        QemuVm vm = QemuVm::launch(probe, assets, {"kvm", "probe"});
        vm.wait();
    } catch (const Error &e) {
        std::string what = e.what(), qemuSaid = tail(readFile(qemuLog(dir.path)), 1);
        failure = e.code() == -ETIMEDOUT
                      ? "did not start within " + std::to_string(kProbeTimeout.count()) + " s"
                      : "failed after " + seconds(Clock::now() - start) + ": " +
                            what.substr(0, what.find('\n')) +
                            (qemuSaid.empty() ? "" : "; qemu said: " + qemuSaid);
    }
    if (failure.empty())
        return {"kvm", "KVM booted a probe guest in " + seconds(Clock::now() - start)};
    bool pvm = ::access("/sys/module/kvm_pvm", F_OK) == 0;
    return tcg((pvm ? "/dev/kvm cannot boot a stock kernel (PVM): probe guest "
                    : "/dev/kvm could not boot a probe guest: it ") +
               failure);
}

} // namespace

std::optional<std::string> findQemu(std::string *why) {
    const char *env = std::getenv("PATH");
    std::string path = env && *env ? env : "/usr/local/bin:/usr/bin:/bin";
    std::stringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (dir.empty()) continue;
        std::string candidate = dir + "/" + kQemuBinary;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    if (why)
        *why = std::string(kQemuBinary) + " not found in PATH (apt-get install qemu-system-x86)";
    return std::nullopt;
}

unsigned long hostTscKhz() { return hostTsc().khz; }

Accel probeAccel(const GuestAssets &assets, const std::string &cacheFile) {
    struct stat kvm;
    if (::stat("/dev/kvm", &kvm) != 0) return tcg("no /dev/kvm");
    common::Fd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (fd.fd < 0) return tcg(std::string("cannot open /dev/kvm: ") + std::strerror(errno));
    std::string why;
    auto qemu = findQemu(&why);
    if (!qemu) throw Error(MO_E_UNSUPPORTED, why);
    nlohmann::json key = probeKey(assets, *qemu, kvm.st_rdev);
    if (auto cached = cachedVerdict(cacheFile, key)) return *cached;
    Accel verdict = bootProbe(assets, cacheFile);
    cacheVerdict(cacheFile, key, verdict);
    return verdict;
}

std::vector<std::string> qemuCommand(const VmConfig &config, const GuestAssets &assets,
                                     const Accel &accel) {
    validateMachine(config, accel);
    std::string why;
    auto qemu = findQemu(&why);
    if (!qemu) throw Error(MO_E_UNSUPPORTED, why);
    bool kvm = accel.name == "kvm";
    const std::string out = std::to_string(kStdoutFd), err = std::to_string(kStderrFd);
    // Option and value on one line:
    // clang-format off
    std::vector<std::string> cmd = {
        *qemu,
        "-machine", kMachine,
        "-accel", kvm ? "kvm" : "tcg,thread=multi",
        "-cpu", kvm ? "host" : "max",
        "-smp", std::to_string(config.vcpus),
        "-m", std::to_string((config.memory + (1 << 20) - 1) >> 20) + "M",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        // qemu's own seccomp filter: no obsolete syscalls, no setuid and the like, no
        // spawning (exec, fork), no scheduler or affinity changes.
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-kernel", assets.kernel,
        "-initrd", assets.initramfs,
        "-append", kernelCommandLine(kvm),
        "-chardev", "file,id=mo-console,path=" + optionValue(consoleLog(config.workDir)),
        "-serial", "chardev:mo-console",
        // fd sets rather than /proc/self/fd paths: reopening a pipe's write end through
        // /proc fails with ENXIO in qemu; a file chardev on a set must append (no O_TRUNC).
        "-add-fd", "fd=" + out + ",set=" + out,
        "-add-fd", "fd=" + err + ",set=" + err,
        "-chardev", "file,id=mo-stdout,append=on,path=/dev/fdset/" + out,
        "-chardev", "file,id=mo-stderr,append=on,path=/dev/fdset/" + err,
        "-chardev", "socket,id=mo-control,fd=" + std::to_string(kControlFd),
        // Port 0 is reserved for a virtconsole. The guest finds the ports by name.
        "-device", "virtio-serial-device,max_ports=4",
        "-device", "virtserialport,chardev=mo-stdout,nr=1,name=" MO_PORT_STDOUT,
        "-device", "virtserialport,chardev=mo-stderr,nr=2,name=" MO_PORT_STDERR,
        "-device", "virtserialport,chardev=mo-control,nr=3,name=" MO_PORT_CONTROL,
    };
    // clang-format on
    addShare(cmd, MO_TAG_JOB, jobDir(config.workDir), false);
    addShare(cmd, MO_TAG_ROOT, config.rootfs, config.rootReadOnly);
    for (size_t i = 0; i < config.mounts.size(); ++i)
        addShare(cmd, volumeTag(i), config.mounts[i].source, config.mounts[i].readOnly);
    return cmd;
}

// qemu's output pipes into the caller's, on a thread of its own, counting what passes:
// a port's write in the guest returns once the data is queued, and qemu exits with
// whatever is still queued, so before its reset the guest asks (protocol.h) until the
// host has all it sent. The thread also reads the control socket for those requests.
struct QemuVm::Relay {
    struct Stream {
        int from = -1;         // qemu's pipe, read end (nonblocking)
        int to = -1;           // the caller's pipe, write end (nonblocking); -1 once closed
        uint64_t taken = 0;    // bytes taken out of `from`
        bool waitRoom = false; // `to` is full
        bool done = false;     // qemu closed its end and everything went on
    };
    Stream streams[2];
    int control = -1; // our end of the control socket (signal() writes here too)
    int stop = -1;    // an eventfd: the owner wants the thread gone
    std::mutex sendLock;
    std::string partial; // the guest's control line so far
    std::optional<std::pair<uint64_t, uint64_t>> drain;
    std::thread thread;

    ~Relay() {
        if (thread.joinable()) {
            uint64_t one = 1;
            ssize_t ignored = ::write(stop, &one, sizeof one);
            (void)ignored;
            thread.join();
        }
        for (const Stream &s : streams)
            for (int fd : {s.from, s.to})
                if (fd >= 0) ::close(fd);
        for (int fd : {control, stop})
            if (fd >= 0) ::close(fd);
    }

    // The thread starts with every signal blocked: a SIGPIPE from a caller that closed
    // its end stays with it, and the process's signals go to threads that want them.
    void start() {
        sigset_t all, old;
        sigfillset(&all);
        ::pthread_sigmask(SIG_SETMASK, &all, &old);
        try {
            thread = std::thread([this] { run(); });
        } catch (...) {
            ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
            throw;
        }
        ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }

    // One line, whole or not at all unless the socket fills midway (the guest reads its
    // control port all the time: a full socket means it stopped); never blocks.
    bool send(const std::string &line) {
        std::lock_guard lock(sendLock);
        for (size_t sent = 0; sent < line.size();) {
            ssize_t n = ::send(control, line.data() + sent, line.size() - sent,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            sent += static_cast<size_t>(n);
        }
        return true;
    }

    static uint64_t unread(int fd) {
        int n = 0;
        return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0 ? static_cast<uint64_t>(n) : 0;
    }

    void pump(Stream &s) {
        static thread_local char scratch[65536];
        for (;;) {
            ssize_t n = s.to >= 0 ? ::splice(s.from, nullptr, s.to, nullptr, kPipeSize,
                                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                  : ::read(s.from, scratch, sizeof scratch);
            if (n > 0) {
                s.taken += static_cast<uint64_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && errno == EAGAIN) { // `from` empty, or `to` full
                s.waitRoom = s.to >= 0 && unread(s.from) > 0;
                return;
            }
            if (n < 0 && errno == EPIPE && s.to >= 0) { // no reader: drop the rest
                ::close(std::exchange(s.to, -1));
                continue;
            }
            // End of file (qemu is gone), or a failure that ends the stream the same way.
            if (s.to >= 0) ::close(std::exchange(s.to, -1));
            s.done = true;
            return;
        }
    }

    // False once the socket is closed (qemu is gone) or failed.
    bool readControl() {
        char buf[256];
        for (;;) {
            ssize_t n = ::recv(control, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return errno == EAGAIN;
            if (n == 0) return false;
            for (ssize_t i = 0; i < n; ++i) {
                if (buf[i] != '\n') {
                    if (partial.size() < 256) partial += buf[i];
                    continue;
                }
                unsigned long long out, err;
                char rest;
                if (std::sscanf(partial.c_str(), "drain %llu %llu%c", &out, &err, &rest) == 2)
                    drain = {out, err};
                partial.clear();
            }
        }
    }

    // What sits in qemu's pipe has left qemu: it counts.
    void answerDrain() {
        if (!drain) return;
        uint64_t want[2] = {drain->first, drain->second};
        for (int i = 0; i < 2; ++i)
            if (!streams[i].done && streams[i].taken + unread(streams[i].from) < want[i]) return;
        drain.reset();
        send("drained\n");
    }

    void run() {
        bool controlOpen = true;
        for (;;) {
            struct pollfd fds[4] = {{stop, POLLIN, 0}};
            int n = 1, at[2] = {-1, -1}, controlAt = -1;
            for (int i = 0; i < 2; ++i) {
                const Stream &s = streams[i];
                if (s.done) continue;
                at[i] = n;
                fds[n++] = s.waitRoom ? pollfd{s.to, POLLOUT, 0} : pollfd{s.from, POLLIN, 0};
            }
            if (controlOpen) {
                controlAt = n;
                fds[n++] = {control, POLLIN, 0};
            }
            if (n == 1) return; // qemu is gone and all its output passed on
            // A stream waiting for room does not see qemu's pipe fill: while a drain is
            // asked for, look again now and then (the answer may not need the room).
            int timeout = drain ? 20 : -1;
            if (::poll(fds, static_cast<nfds_t>(n), timeout) < 0) {
                if (errno == EINTR) continue;
                return;
            }
            if (fds[0].revents) return;
            for (int i = 0; i < 2; ++i)
                if (at[i] >= 0 && fds[at[i]].revents) {
                    streams[i].waitRoom = false;
                    pump(streams[i]);
                }
            if (controlAt >= 0 && fds[controlAt].revents) controlOpen = readControl();
            answerDrain();
        }
    }
};

QemuVm QemuVm::launch(const VmConfig &config, const GuestAssets &assets, const Accel &accel) {
    std::vector<std::string> cmd = qemuCommand(config, assets, accel);
    requireDirectory(config.rootfs, "root filesystem");
    for (const auto &m : config.mounts) requireDirectory(m.source, "volume source");
    std::string job = jobDir(config.workDir);
    std::error_code ec;
    fs::create_directories(job, ec);
    if (ec) throw sysError("vm: create " + quote(job), ec.value());
    ::unlink((job + "/" MO_EXIT_FILE).c_str());
    writeJob(config, job);

    // Every fd is owned (by vm, its relay or a local Fd) as soon as it exists.
    QemuVm vm;
    vm._workDir = config.workDir;
    vm._timeout = config.timeout;
    vm._relay = std::make_unique<Relay>();
    Relay &relay = *vm._relay;
    FdList qemuEnds; // stdout's and stderr's write ends
    for (int i = 0; i < 2; ++i) {
        int fromQemu[2], toCaller[2];
        if (::pipe2(fromQemu, O_CLOEXEC) != 0) throw sysError("vm: pipe", errno);
        relay.streams[i].from = fromQemu[0];
        qemuEnds.fds.push_back(fromQemu[1]);
        if (::pipe2(toCaller, O_CLOEXEC) != 0) throw sysError("vm: pipe", errno);
        (i == 0 ? vm._out : vm._err) = toCaller[0];
        relay.streams[i].to = toCaller[1];
        for (int fd : {relay.streams[i].from, relay.streams[i].to}) {
            ::fcntl(fd, F_SETPIPE_SZ, kPipeSize);
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        }
    }
    int control[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0)
        throw sysError("vm: socketpair", errno);
    relay.control = control[0];
    common::Fd controlQemu(control[1]);
    relay.stop = ::eventfd(0, EFD_CLOEXEC);
    if (relay.stop < 0) throw sysError("vm: eventfd", errno);
    std::string logPath = qemuLog(config.workDir);
    common::Fd log(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (log.fd < 0) throw sysError("vm: create " + quote(logPath), errno);

    vm._pid = spawn(cmd, log.fd, {qemuEnds.fds[0], qemuEnds.fds[1], controlQemu.fd});
    vm._deadline = Clock::now() + config.timeout;
    vm._pidfd = pidfdOpen(vm._pid);
    if (vm._pidfd < 0) throw sysError("vm: pidfd_open", errno); // ~QemuVm kills it
    relay.start();
    return vm;
}

QemuVm::QemuVm(QemuVm &&o) noexcept
    : _pid(std::exchange(o._pid, -1)), _pidfd(std::exchange(o._pidfd, -1)),
      _out(std::exchange(o._out, -1)), _err(std::exchange(o._err, -1)), _relay(std::move(o._relay)),
      _workDir(std::move(o._workDir)), _deadline(o._deadline), _timeout(o._timeout),
      _reaped(o._reaped), _killed(o._killed.load()), _status(o._status), _signal(o._signal) {}

QemuVm::~QemuVm() {
    if (_pid > 0 && !_reaped) {
        kill();
        while (::waitpid(_pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
    _relay.reset(); // its thread ends before the caller's ends close
    for (int fd : {_pidfd, _out, _err})
        if (fd >= 0) ::close(fd);
}

// Touches only what stays put from launch to destruction (the pidfd, the relay's socket
// and lock): safe beside wait() on another thread.
bool QemuVm::signal(int sig) {
    if (!_relay || _pidfd < 0) return false;
    struct pollfd exited = {_pidfd, POLLIN, 0};
    if (::poll(&exited, 1, 0) != 0) return false;
    return _relay->send("signal " + std::to_string(sig) + "\n");
}

// A pidfd signals only this qemu, also once wait() reaped it (ESRCH then).
void QemuVm::kill() {
    if (_pidfd < 0) return;
    if (::syscall(SYS_pidfd_send_signal, _pidfd, SIGKILL, nullptr, 0) == 0) _killed = true;
}

int QemuVm::wait() {
    if (_reaped) {
        if (_status >= 0) return _status;
        throw Error(MO_E_STATE, "vm: already waited for");
    }
    bool timedOut = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(_deadline - Clock::now());
        struct pollfd exited = {_pidfd, POLLIN, 0};
        int n = ::poll(&exited, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("vm: poll", errno);
        if (n == 0) {
            timedOut = true;
            kill();
        }
        break;
    }
    int raw = 0;
    while (::waitpid(_pid, &raw, 0) < 0)
        if (errno != EINTR) throw sysError("vm: waitpid", errno);
    _reaped = true;

    std::string console = readFile(consoleLog(_workDir));
    std::string exitFile = jobDir(_workDir) + "/" MO_EXIT_FILE;
    auto fromConsole = consoleExitReport(console);
    auto fromFile = parseExitReport(readFile(exitFile));
    if (fromConsole && fromFile && *fromConsole != *fromFile)
        throw Error(MO_E_STATE, "vm: the guest reported exit status " +
                                    describeReport(*fromConsole) + " on the console but " +
                                    describeReport(*fromFile) + " in " + quote(exitFile));
    if (fromConsole || fromFile) {
        ExitReport report = fromConsole ? *fromConsole : *fromFile;
        if (report.code == MO_EXIT_SETUP_FAILED && !report.signal)
            if (auto why = setupFailure(console))
                throw Error(MO_E_STATE, "vm: guest setup failed: " + *why);
        _signal = report.signal;
        return _status = report.code;
    }
    if (timedOut)
        throw Error(-ETIMEDOUT, "vm: no exit within " + std::to_string(_timeout.count()) +
                                    " s, killed" + diagnostics(_workDir, console));
    if (_killed) {
        _signal = SIGKILL;
        return _status = 128 + SIGKILL;
    }
    throw Error(MO_E_STATE, "vm: the guest stopped without reporting an exit status (" +
                                describeStatus(raw) + ")" + diagnostics(_workDir, console));
}

} // namespace mobileops::krun
