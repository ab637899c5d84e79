// `integrity check-img FILE.img`: a read-only filesystem check of an ext2/3/4 image (the
// root filesystem images `container run --rootfs-img` mounts), by running `e2fsck -n -f`
// and reading its exit status (e2fsck(8): 0 clean, 4 errors left uncorrected, 8 an
// operational error, ...).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::integrity {

struct ImageCheck {
    std::string file;     // as given, made absolute
    bool clean = false;   // e2fsck found nothing to fix
    int exitCode = 0;     // e2fsck's exit status
    std::string verdict;  // one line: "clean", "errors found: ...", "not an ext2/3/4 image"
    std::string output;   // e2fsck's stdout and stderr, as it printed them
    bool mounted = false; // the image is attached to a loop device that is mounted: a
                          // check of a live filesystem can report errors that are not there
    nlohmann::json toJson() const; // {file, clean, exitCode, verdict, output, mounted}
};

// Throws common::Error: MO_E_NOT_FOUND (no such file), MO_E_INVALID (not a regular file),
// MO_E_UNSUPPORTED (no e2fsck on this host, naming the package: e2fsprogs).
ImageCheck checkImage(const std::string &file);

} // namespace mobileops::integrity
