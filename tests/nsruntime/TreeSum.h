// A checksum of a directory tree (names, types, modes, owners, sizes, mtimes, link
// targets, file contents) to prove a rootfs was not modified. Does not cross mounts.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mobileops::testing {

inline uint64_t fnv(uint64_t h, const void *data, size_t n) {
    auto p = static_cast<const unsigned char *>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

inline uint64_t treeSum(const std::string &root) {
    namespace fs = std::filesystem;
    std::vector<std::string> paths;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        paths.push_back(it->path().string());
    std::sort(paths.begin(), paths.end());
    uint64_t h = 14695981039346656037ull;
    for (const auto &p : paths) {
        struct stat st;
        if (::lstat(p.c_str(), &st) < 0) continue;
        std::string rel = p.substr(root.size());
        h = fnv(h, rel.data(), rel.size());
        uint64_t meta[] = {st.st_mode,
                           st.st_uid,
                           st.st_gid,
                           static_cast<uint64_t>(st.st_size),
                           static_cast<uint64_t>(st.st_mtim.tv_sec),
                           static_cast<uint64_t>(st.st_mtim.tv_nsec)};
        h = fnv(h, meta, sizeof meta);
        if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
            if (n > 0) h = fnv(h, buf, static_cast<size_t>(n));
        } else if (S_ISREG(st.st_mode)) {
            std::ifstream in(p, std::ios::binary);
            char buf[65536];
            while (in.read(buf, sizeof buf) || in.gcount() > 0)
                h = fnv(h, buf, static_cast<size_t>(in.gcount()));
        }
    }
    return h;
}

} // namespace mobileops::testing
