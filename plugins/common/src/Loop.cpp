#include <mobileops/common/Loop.h>

#include <mobileops/common/Errors.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

extern char **environ;

namespace mobileops::common {

namespace {

Error invalid(const std::string &message) { return Error(MO_E_INVALID, message); }

class UniqueFd {
public:
    explicit UniqueFd(int fd = -1) : _fd(fd) {}
    ~UniqueFd() {
        if (_fd >= 0) ::close(_fd);
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    int get() const { return _fd; }
    int release() { return std::exchange(_fd, -1); }
    void reset() {
        if (_fd >= 0) ::close(std::exchange(_fd, -1));
    }

private:
    int _fd;
};

struct ProgramResult {
    int status = -1;    // exit status, 128+N when killed by signal N
    std::string output; // stdout and stderr together, the last 64 KiB
};

// Run a program (no shell) with stdin on /dev/null; its output is captured.
ProgramResult runProgram(const std::vector<std::string> &args) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) throw sysError("pipe", errno);
    UniqueFd readEnd(p[0]), writeEnd(p[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 2);
    // The caller may ignore or block signals (a monitor, a foreground run): not the tool.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char *> argv;
    for (const auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid;
    int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw sysError("run " + quote(args[0]), rc);
    writeEnd.reset();

    ProgramResult result;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(readEnd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        result.output.append(buf, static_cast<size_t>(n));
        if (result.output.size() > 65536) result.output.erase(0, result.output.size() - 65536);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw sysError("wait for " + quote(args[0]), errno);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

// The last `lines` non-empty lines of `text`, joined with "; ".
std::string lastLines(const std::string &text, size_t lines) {
    std::vector<std::string> all;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())))
            line.pop_back();
        size_t start = line.find_first_not_of(" \t");
        if (start != std::string::npos) all.push_back(line.substr(start));
    }
    std::string out;
    for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i)
        out += (out.empty() ? "" : "; ") + all[i];
    return out;
}

std::string readSmallFile(const std::string &path) {
    std::ifstream in(path);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

std::string human(uint64_t bytes) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = static_cast<double>(bytes);
    int u = 0;
    while (v >= 1024 && u < 5) v /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

// A fresh name next to `file` for the image under construction.
std::string temporaryName(const std::string &file) {
    std::random_device rd;
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%08x", rd());
    return file + ".partial-" + suffix;
}

} // namespace

LoopDevice::LoopDevice(const std::string &file, bool readOnly) {
    UniqueFd backing(::open(file.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (backing.get() < 0) throw sysError("rootfs image " + quote(file), errno);
    UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
    if (control.get() < 0) throw sysError("open " + quote("/dev/loop-control"), errno);

    struct loop_config config = {};
    config.fd = static_cast<uint32_t>(backing.get());
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0);
    std::strncpy(reinterpret_cast<char *>(config.info.lo_file_name), file.c_str(),
                 LO_NAME_SIZE - 1);
    // Another process may take the free device between GET_FREE and our configure
    // (EBUSY): ask again, as losetup does.
    for (int attempt = 0; attempt < 16; ++attempt) {
        int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
        if (n < 0) throw sysError("find a free loop device", errno);
        std::string path = "/dev/loop" + std::to_string(n);
        UniqueFd dev(::open(path.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
        if (dev.get() < 0) {
            if (errno == ENOENT || errno == ENXIO) continue;
            throw sysError("open " + quote(path), errno);
        }
        int r = ::ioctl(dev.get(), LOOP_CONFIGURE, &config);
        if (r < 0 && (errno == EINVAL || errno == ENOTTY)) {
            // Before Linux 5.8: attach, then set the flags. LO_FLAGS_READ_ONLY follows
            // from the fd's mode.
            r = ::ioctl(dev.get(), LOOP_SET_FD, backing.get());
            if (r == 0) {
                struct loop_info64 info = config.info;
                info.lo_flags = LO_FLAGS_AUTOCLEAR;
                if (::ioctl(dev.get(), LOOP_SET_STATUS64, &info) < 0) {
                    int err = errno;
                    ::ioctl(dev.get(), LOOP_CLR_FD, 0);
                    throw sysError("configure " + quote(path) + " for " + quote(file), err);
                }
            }
        }
        if (r < 0 && errno == EBUSY) continue;
        if (r < 0) throw sysError("attach " + quote(file) + " to " + quote(path), errno);
        _fd = dev.release();
        _path = path;
        return;
    }
    throw Error(MO_E_BUSY, "attach " + quote(file) + ": no free loop device after 16 attempts");
}

LoopDevice::~LoopDevice() {
    if (_fd >= 0) ::close(_fd);
}

std::vector<std::string> loopDevicesOf(const std::string &file) {
    std::vector<std::string> out;
    struct stat want;
    if (::stat(file.c_str(), &want) < 0) return out;
    DIR *dir = ::opendir("/sys/block");
    if (!dir) return out;
    while (struct dirent *e = ::readdir(dir)) {
        std::string name = e->d_name;
        if (name.rfind("loop", 0) != 0) continue;
        // The same file by device and inode, whatever path named it.
        std::string backing = readSmallFile("/sys/block/" + name + "/loop/backing_file");
        struct stat st;
        if (!backing.empty() && ::stat(backing.c_str(), &st) == 0 && st.st_dev == want.st_dev &&
            st.st_ino == want.st_ino)
            out.push_back("/dev/" + name);
    }
    ::closedir(dir);
    std::sort(out.begin(), out.end());
    return out;
}

std::string findProgram(const std::string &name) {
    std::vector<std::string> dirs;
    if (const char *path = std::getenv("PATH")) {
        std::istringstream in(path);
        for (std::string d; std::getline(in, d, ':');)
            if (!d.empty()) dirs.push_back(d);
    }
    for (const char *d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
    for (const auto &d : dirs) {
        std::string candidate = d + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    throw Error(MO_E_UNSUPPORTED, quote(name) + " not found: install e2fsprogs");
}

void checkImage(const std::string &image, bool readOnly) {
    struct stat st;
    if (::stat(image.c_str(), &st) < 0) throw sysError("rootfs image " + quote(image), errno);
    if (!S_ISREG(st.st_mode))
        throw invalid("rootfs image " + quote(image) + " is not a regular file");
    // A container that just stopped may still be releasing its device.
    auto users = loopDevicesOf(image);
    for (int i = 0; i < 40 && !users.empty(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        users = loopDevicesOf(image);
    }
    if (!users.empty()) {
        bool sharedReadOnly = readOnly;
        for (const auto &u : users)
            sharedReadOnly =
                sharedReadOnly && readSmallFile("/sys/block/" + u.substr(5) + "/ro") == "1";
        if (sharedReadOnly) return; // checked by its first user, and nobody writes to it
        throw Error(MO_E_BUSY, "rootfs image " + quote(image) + " is in use by " +
                                   quote(users.front()) +
                                   ": a read-write image serves one container at a time "
                                   "(--volatile shares it read-only)");
    }
    ProgramResult r = runProgram({findProgram("e2fsck"), readOnly ? "-n" : "-p", image});
    // 0: clean, 1: errors corrected; 2 asks for a reboot (a mounted root), not ours.
    if (r.status == 0 || r.status == 1 || r.status == 2) return;
    std::string reason = lastLines(r.output, 3);
    std::string hint = r.status == 4 ? (readOnly ? "; it has errors a read-only check cannot fix: "
                                                   "run `e2fsck -f " +
                                                       image + "`"
                                                 : "; repair it with `e2fsck -f " + image + "`")
                       : r.status == 8 ? "; is it an ext4 image?"
                                       : "";
    throw invalid("rootfs image " + quote(image) + " failed its check (e2fsck exit status " +
                  std::to_string(r.status) + (reason.empty() ? "" : ": " + reason) + ")" + hint);
}

uint64_t parseSize(const std::string &text) {
    auto bad = [&](const std::string &why) { return invalid("size " + quote(text) + ": " + why); };
    size_t end = 0;
    while (end < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.'))
        ++end;
    std::string number = text.substr(0, end);
    std::string unit = text.substr(end);
    for (auto &c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1 ||
        number.size() > 20)
        throw bad("expected a size such as `2G` or `512Mi`");
    if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
    if (unit.size() == 2 && unit[1] == 'I') unit.pop_back();
    static const std::string kUnits = "KMGTP";
    int power = 0;
    if (unit == "B" || unit.empty()) {
        power = 0;
    } else if (unit.size() == 1 && kUnits.find(unit[0]) != std::string::npos) {
        power = static_cast<int>(kUnits.find(unit[0])) + 1;
    } else {
        throw bad("unknown unit (expected K, M, G, T or P, as in `2G` or `512Mi`)");
    }
    double bytes = std::stod(number) * std::pow(1024.0, power);
    if (bytes > 9.0e18) throw bad("too large");
    if (power == 0 && number.find('.') != std::string::npos)
        throw bad("a number of bytes has no fraction");
    return static_cast<uint64_t>(std::ceil(bytes));
}

nlohmann::json createImage(const ImageRequest &request) {
    if (request.dir.empty()) throw invalid("create-img: no source directory given");
    if (request.file.empty()) throw invalid("create-img: no image file given");
    if (request.size.empty()) throw invalid("create-img: no size given (--size, e.g. 2G)");
    uint64_t size = parseSize(request.size);
    constexpr uint64_t kMinSize = 4 << 20;
    if (size < kMinSize) throw invalid("size " + quote(request.size) + ": below the minimum `4Mi`");
    size = (size + 4095) / 4096 * 4096;

    struct stat st;
    if (::stat(request.dir.c_str(), &st) < 0)
        throw sysError("source directory " + quote(request.dir), errno);
    if (!S_ISDIR(st.st_mode)) throw invalid(quote(request.dir) + " is not a directory");
    if (::lstat(request.file.c_str(), &st) == 0) {
        if (!request.force)
            throw Error(MO_E_EXISTS, quote(request.file) + " exists (--force replaces it)");
        if (!S_ISREG(st.st_mode))
            throw invalid(quote(request.file) + " exists and is not a regular file");
        if (auto users = loopDevicesOf(request.file); !users.empty())
            throw Error(MO_E_BUSY, quote(request.file) + " is in use by " + quote(users.front()));
    } else if (errno != ENOENT) {
        throw sysError(quote(request.file), errno);
    }

    const std::string mkfs = findProgram("mkfs.ext4");
    const std::string partial = temporaryName(request.file);
    struct Remove {
        std::string path;
        ~Remove() {
            if (!path.empty()) ::unlink(path.c_str());
        }
    } cleanup{partial};
    {
        UniqueFd fd(::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (fd.get() < 0) throw sysError("create " + quote(partial), errno);
        if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
            throw sysError("size " + quote(partial) + " to " + human(size), errno);
    }
    // -F: it is a file, not a device; -m 0: no blocks reserved for a root that is not
    // the host's; -d: the tree, with its owners and modes.
    ProgramResult r = runProgram({mkfs, "-F", "-q", "-m", "0", "-d", request.dir, partial});
    if (r.status != 0) {
        std::string reason = lastLines(r.output, 3);
        if (reason.find("Could not allocate block") != std::string::npos ||
            reason.find("No space left") != std::string::npos)
            reason += " (the tree does not fit: give a larger --size)";
        throw Error(MO_E_INVALID, "mkfs.ext4 -d " + quote(request.dir) + " failed (exit status " +
                                      std::to_string(r.status) + "): " + reason);
    }
    if (::rename(partial.c_str(), request.file.c_str()) < 0)
        throw sysError("rename " + quote(partial) + " to " + quote(request.file), errno);
    cleanup.path.clear();

    if (::stat(request.file.c_str(), &st) < 0) throw sysError(quote(request.file), errno);
    char resolved[PATH_MAX];
    std::string file = ::realpath(request.file.c_str(), resolved) ? resolved : request.file;
    return {{"file", file},
            {"dir", request.dir},
            {"size", size},
            {"size_text", human(size)},
            {"allocated", static_cast<uint64_t>(st.st_blocks) * 512},
            {"allocated_text", human(static_cast<uint64_t>(st.st_blocks) * 512)},
            {"output", r.output}};
}

} // namespace mobileops::common
