#include "Toolbox.h"

#include "Hash.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <set>
#include <vector>

namespace mobileops::integrity {

using common::Error;
using common::quote;
using json = nlohmann::json;

namespace {

bool endsWith(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One covered directory (relative to the prefix) and which of its regular files the
// manifest lists. Keep in step with cmake/ToolboxManifest.cmake.
struct Covered {
    std::string dir;
    bool (*match)(const std::string &name);
};

// <libdir>/mobileops: where the manifest itself lives (lib/mobileops, or a multiarch libdir
// such as lib/x86_64-linux-gnu/mobileops in an install to /usr), relative to the prefix.
std::string libDirOf(const std::string &prefix, const std::string &manifestFile) {
    namespace fs = std::filesystem;
    fs::path dir = fs::absolute(manifestFile).lexically_normal().parent_path();
    fs::path rel = dir.lexically_relative(fs::absolute(prefix).lexically_normal());
    if (dir.filename() == "mobileops" && !rel.empty() && *rel.begin() != "..") return rel.string();
    return "lib/mobileops";
}

std::vector<Covered> coveredDirs(const std::string &libDir) {
    auto so = [](const std::string &n) { return endsWith(n, ".so"); };
    return {
        // bin/mobileops and `mobileops-*` helpers; not the `mobileops_*_tests` that the
        // build tree also puts in bin/.
        {"bin",
         [](const std::string &n) { return n == "mobileops" || n.rfind("mobileops-", 0) == 0; }},
        {libDir + "/plugins", so},
        {libDir + "/modules", so},
        {"libexec/mobileops", [](const std::string &) { return true; }},
        {"share/mobileops/scripts", [](const std::string &n) { return endsWith(n, ".lua"); }},
    };
}

bool insidePrefix(const std::string &path) {
    std::filesystem::path p(path);
    return !path.empty() && p.is_relative() &&
           std::none_of(p.begin(), p.end(), [](auto &part) { return part == ".."; });
}

bool isRegular(const std::string &path, struct stat &st) {
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The relative paths of the covered files present under `prefix`.
std::set<std::string> coveredFiles(const std::string &prefix, const std::string &libDir) {
    std::set<std::string> out;
    for (const Covered &c : coveredDirs(libDir)) {
        DIR *d = ::opendir((prefix + "/" + c.dir).c_str());
        if (!d) continue;
        while (dirent *e = ::readdir(d)) {
            std::string name = e->d_name;
            if (name == "." || name == ".." || !c.match(name)) continue;
            struct stat st {};
            if (isRegular(prefix + "/" + c.dir + "/" + name, st)) out.insert(c.dir + "/" + name);
        }
        ::closedir(d);
    }
    return out;
}

std::string sha256File(const std::string &path) {
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) throw common::sysError("hash " + quote(path), errno);
    Sha256 hash;
    std::vector<char> buf(1 << 20);
    for (;;) {
        ssize_t n = ::read(fd.fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("hash " + quote(path), errno);
        if (n == 0) break;
        hash.update(buf.data(), static_cast<size_t>(n));
    }
    return hash.finishHex();
}

std::string modeString(mode_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

json readManifest(const std::string &manifestFile) {
    common::Fd fd(::open(manifestFile.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) {
        int err = errno;
        if (err == ENOENT)
            throw Error(MO_E_NOT_FOUND, "toolbox manifest " + quote(manifestFile) +
                                            ": no such file (reinstall mobileops to write it)");
        throw common::sysError("toolbox manifest " + quote(manifestFile), err);
    }
    std::string text;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd.fd, buf, sizeof buf)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("toolbox manifest " + quote(manifestFile), errno);
        text.append(buf, static_cast<size_t>(n));
    }
    auto bad = [&](const std::string &why) {
        return Error(MO_E_INVALID, "toolbox manifest " + quote(manifestFile) + ": " + why);
    };
    json m = json::parse(text, nullptr, false);
    if (m.is_discarded()) throw bad("not valid JSON");
    if (!m.is_object() || m.value("format", json()) != 1) throw bad("expected `format` 1");
    if (m.value("algorithm", json()) != "sha256")
        throw bad("unsupported `algorithm` (expected `sha256`)");
    if (!m.contains("files") || !m["files"].is_object()) throw bad("`files` is not an object");
    for (auto &[path, entry] : m["files"].items()) {
        const std::string field = "`files." + path + "`";
        if (!insidePrefix(path)) throw bad(field + ": not a path inside the prefix");
        if (!entry.is_object() || !entry.contains("sha256") || !entry["sha256"].is_string() ||
            !entry.contains("size") || !entry["size"].is_number_unsigned() ||
            !entry.contains("mode") || !entry["mode"].is_string())
            throw bad(field + ": expected {sha256, size, mode}");
    }
    return m;
}

} // namespace

json checkToolbox(const std::string &prefix, const std::string &manifestFile) {
    json manifest = readManifest(manifestFile);
    std::set<std::string> present = coveredFiles(prefix, libDirOf(prefix, manifestFile));
    json changed = json::array(), missing = json::array(), extra = json::array();
    size_t checked = 0;
    for (auto &[path, expected] : manifest["files"].items()) {
        present.erase(path);
        const std::string file = prefix + "/" + path;
        struct stat st {};
        if (!isRegular(file, st)) {
            missing.push_back(path);
            continue;
        }
        ++checked;
        json actual = {{"sha256", sha256File(file)},
                       {"size", static_cast<uint64_t>(st.st_size)},
                       {"mode", modeString(st.st_mode)}};
        json what = json::array();
        if (actual["sha256"] != expected["sha256"]) what.push_back("content");
        if (actual["size"] != expected["size"]) what.push_back("size");
        if (actual["mode"] != expected["mode"]) what.push_back("mode");
        if (!what.empty())
            changed.push_back(
                {{"path", path}, {"what", what}, {"expected", expected}, {"actual", actual}});
    }
    for (const std::string &path : present) extra.push_back(path);
    return {{"ok", changed.empty() && missing.empty() && extra.empty()},
            {"manifest", manifestFile},
            {"prefix", prefix},
            {"checked", checked},
            {"changed", changed},
            {"missing", missing},
            {"extra", extra}};
}

} // namespace mobileops::integrity
