#include "Paths.h"

#include <mobileops/common/Errors.h>

#include <sys/stat.h>

#include <cerrno>

namespace mobileops::storage {

std::string digestHex(const std::string &digest) {
    constexpr std::string_view prefix = "sha256:";
    bool ok = digest.size() == prefix.size() + 64 && digest.compare(0, prefix.size(), prefix) == 0;
    for (size_t i = prefix.size(); ok && i < digest.size(); ++i) {
        char c = digest[i];
        ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }
    if (!ok)
        throw sdk::Error(MO_E_INVALID, "digest " + common::quote(digest) +
                                           " is not `sha256:` and 64 lowercase hex digits");
    return digest.substr(prefix.size());
}

std::string Paths::blob(const std::string &digest) const {
    return blobs() + "/" + digestHex(digest);
}

std::string Paths::layer(const std::string &diffId) const {
    return layers() + "/" + digestHex(diffId);
}

std::string Paths::flat(const std::string &imageId) const {
    return flats() + "/" + digestHex(imageId);
}

void Paths::create() const {
    auto mk = [](const std::string &dir, mode_t mode) {
        if (::mkdir(dir.c_str(), mode) < 0 && errno != EEXIST)
            throw common::sysError("create " + common::quote(dir), errno);
    };
    for (size_t p = 1; (p = _root.find('/', p)) != std::string::npos; ++p)
        mk(_root.substr(0, p), 0755);
    mk(_root, 0700);
    mk(_root + "/blobs", 0700);
    mk(blobs(), 0700);
    mk(layers(), 0700);
    mk(containers(), 0700);
    mk(flats(), 0700);
    mk(volumes(), 0700);
    mk(snapshots(), 0700);
    mk(tmp(), 0700);
}

} // namespace mobileops::storage
