#include "TestUtil.h"

#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace mobileops::test {

namespace {

std::string slurp(int fd) {
    std::string out;
    char buf[4096];
    ssize_t n;
    ::lseek(fd, 0, SEEK_SET);
    while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
}

} // namespace

Result run(const std::vector<std::string> &argv, const std::map<std::string, std::string> &env) {
    FILE *out = std::tmpfile();
    FILE *err = std::tmpfile();
    pid_t pid = ::fork();
    if (pid == 0) {
        int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        ::dup2(::fileno(out), 1);
        ::dup2(::fileno(err), 2);
        for (auto &[k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
        std::vector<char *> args;
        for (auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    Result r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(::fileno(out));
    r.err = slurp(::fileno(err));
    std::fclose(out);
    std::fclose(err);
    return r;
}

TempDir::TempDir() {
    char tmpl[] = "/tmp/mo-test-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    _path = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    // Fixture dirs may have been made world-writable or read-only; removal still works as root.
    std::filesystem::remove_all(_path, ec);
}

std::string TempDir::file(const std::string &name, const std::string &content) const {
    std::string p = _path + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(p).parent_path());
    std::ofstream(p) << content;
    return p;
}

std::string dispatcher() { return MOBILEOPS_BINARY_DIR "/bin/mobileops"; }

std::string fixtureDir(const std::string &name) {
    return MOBILEOPS_BINARY_DIR "/tests/fixtures/plugins/" + name;
}

} // namespace mobileops::test
