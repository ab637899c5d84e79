#include "CheckImg.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>
#include <mobileops/common/Loop.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

extern char **environ;

namespace mobileops::integrity {

using common::Error;
using common::quote;
using json = nlohmann::json;

namespace {

// e2fsck(8)'s exit status is a bit mask.
constexpr int kCorrected = 1 | 2, kUncorrected = 4, kOperational = 8;
constexpr size_t kMaxOutput = 1 << 20;

struct Run {
    int status = -1;
    std::string output;
};

// `args` without a shell, stdin on /dev/null, stdout and stderr into one pipe, in the C
// locale so the lines read the same on every host.
Run run(const std::vector<std::string> &args) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) throw common::sysError("pipe", errno);
    common::Fd readEnd(p[0]), writeEnd(p[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.fd, 1);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.fd, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char *> argv, envp;
    for (const auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    for (char **e = environ; *e; ++e)
        if (std::strncmp(*e, "LC_ALL=", 7) != 0) envp.push_back(*e);
    envp.push_back(const_cast<char *>("LC_ALL=C"));
    envp.push_back(nullptr);
    pid_t pid;
    int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw common::sysError("run " + quote(args[0]), rc);
    ::close(writeEnd.fd);
    writeEnd.fd = -1;

    Run result;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(readEnd.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (result.output.size() < kMaxOutput) result.output.append(buf, static_cast<size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) throw common::sysError("wait for " + quote(args[0]), errno);
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

// The ext2/3/4 superblock magic, 0xEF53 at byte 1080.
bool hasExtMagic(const std::string &file) {
    common::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    unsigned char magic[2] = {};
    return fd.fd >= 0 && ::pread(fd.fd, magic, sizeof magic, 1080) == 2 && magic[0] == 0x53 &&
           magic[1] == 0xEF;
}

std::string trim(const std::string &s) {
    auto b = s.find_first_not_of(" \t\r");
    if (b == std::string::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// "Inode 11 ref count is 7, should be 2" from e2fsck's output: its first problem without
// the question -n answered, and how many more it asked about.
std::string problems(const std::string &output) {
    static const std::regex question(R"((^|\s)[^.?]*\? no$)");
    static const std::regex noise(
        R"(^(Pass \d+[A-Z]?:|e2fsck \d|.*WARNING: Filesystem still has errors|.*: \d+/\d+ files ))");
    std::string first;
    size_t asked = 0;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) {
        line = trim(line);
        bool isQuestion = std::regex_search(line, question);
        if (isQuestion) ++asked;
        line = trim(std::regex_replace(line, question, ""));
        if (first.empty() && !line.empty() && !std::regex_search(line, noise)) first = line;
    }
    while (!first.empty() && first.back() == '.') first.pop_back();
    if (first.empty()) return "see the output";
    if (asked > 1) first += " (and " + std::to_string(asked - 1) + " more)";
    return first;
}

std::string lastLine(const std::string &output) {
    std::string last;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
        if (!trim(line).empty()) last = trim(line);
    return last;
}

std::string verdictOf(int exitCode, const std::string &output, bool ext) {
    if (exitCode == 0) return "clean";
    if (!ext) return "not an ext2/3/4 image";
    if (exitCode < 128 && (exitCode & (kCorrected | kUncorrected))) {
        std::string v = "errors found: " + problems(output);
        if (exitCode & kOperational) v += "; e2fsck stopped before the end";
        return v;
    }
    return "e2fsck failed with exit status " + std::to_string(exitCode) + ": " + lastLine(output);
}

std::string readSmall(const std::string &path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
}

// Whether a mount in any mount namespace (a container mounts its rootfs image in its own)
// has one of `devices` ("7:3") as its source.
bool mountedAnywhere(const std::set<std::string> &devices) {
    auto scan = [&](const std::string &mountinfo) {
        std::ifstream in(mountinfo);
        for (std::string line; std::getline(in, line);) {
            std::istringstream fields(line);
            std::string id, parent, dev;
            fields >> id >> parent >> dev;
            if (devices.count(dev)) return true;
        }
        return false;
    };
    if (scan("/proc/self/mountinfo")) return true;
    std::set<std::string> seen;
    char self[64] = {};
    if (::readlink("/proc/self/ns/mnt", self, sizeof self - 1) > 0) seen.insert(self);
    DIR *proc = ::opendir("/proc");
    if (!proc) return false;
    bool found = false;
    while (dirent *e = ::readdir(proc)) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        const std::string dir = std::string("/proc/") + e->d_name;
        char ns[64] = {};
        if (::readlink((dir + "/ns/mnt").c_str(), ns, sizeof ns - 1) <= 0) continue;
        if (!seen.insert(ns).second) continue;
        if ((found = scan(dir + "/mountinfo"))) break;
    }
    ::closedir(proc);
    return found;
}

bool loopMounted(const std::string &file) {
    std::set<std::string> devices;
    for (const std::string &dev : common::loopDevicesOf(file)) {
        std::string number = readSmall("/sys/block/" + dev.substr(dev.rfind('/') + 1) + "/dev");
        if (!number.empty()) devices.insert(number);
    }
    return !devices.empty() && mountedAnywhere(devices);
}

} // namespace

json ImageCheck::toJson() const {
    return {{"file", file},       {"clean", clean},   {"exitCode", exitCode},
            {"verdict", verdict}, {"output", output}, {"mounted", mounted}};
}

ImageCheck checkImage(const std::string &file) {
    ImageCheck check;
    check.file = std::filesystem::absolute(file).lexically_normal().string();
    struct stat st {};
    if (::stat(check.file.c_str(), &st) < 0) {
        if (errno == ENOENT) throw Error(MO_E_NOT_FOUND, "image " + quote(file) + ": no such file");
        throw common::sysError("image " + quote(file), errno);
    }
    if (!S_ISREG(st.st_mode))
        throw Error(MO_E_INVALID, "image " + quote(file) + ": not a regular file");
    const std::string e2fsck = common::findProgram("e2fsck");
    check.mounted = loopMounted(check.file);
    Run r = run({e2fsck, "-n", "-f", check.file});
    check.exitCode = r.status;
    check.output = std::move(r.output);
    check.clean = r.status == 0;
    check.verdict = verdictOf(r.status, check.output, hasExtMagic(check.file));
    return check;
}

} // namespace mobileops::integrity
