// Loop devices and ext4 images. A device is attached with LO_FLAGS_AUTOCLEAR, so it goes
// with its last mount: the namespace runtime mounts rootfs images in the container's own
// mount namespace (gone with the namespace, also after a kill -9); the storage plugin
// mounts size-limited volumes and writable layers.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::common {

// A loop device attached to a file, released (detached once unused) on destruction.
class LoopDevice {
public:
    // LOOP_CTL_GET_FREE + LOOP_CONFIGURE (LOOP_SET_FD + LOOP_SET_STATUS64 on kernels
    // before 5.8), with LO_FLAGS_AUTOCLEAR and, when `readOnly`, LO_FLAGS_READ_ONLY.
    LoopDevice(const std::string &file, bool readOnly);
    ~LoopDevice();
    LoopDevice(const LoopDevice &) = delete;
    LoopDevice &operator=(const LoopDevice &) = delete;

    const std::string &path() const { return _path; } // "/dev/loop3"

private:
    int _fd = -1;
    std::string _path;
};

// Loop devices ("/dev/loop3") whose backing file is `file`: /sys/block/loop*/loop/
// backing_file compared by device and inode.
std::vector<std::string> loopDevicesOf(const std::string &file);

// Before a container starts on `image`, in the caller: a regular file, used by no other
// loop device (a read-write image serves one container at a time; read-only users may
// share it), and clean by `e2fsck -p` (`-n` when `readOnly`). Errors name the image and
// carry e2fsck's reason.
void checkImage(const std::string &image, bool readOnly);

// "2G", "512Mi", "1.5G", "4096": bytes. K, M, G, T (with or without `i`, with or
// without a trailing `B`, any case) are powers of 1024. Throws MO_E_INVALID.
uint64_t parseSize(const std::string &text);

struct ImageRequest {
    std::string dir;    // the tree to copy in
    std::string file;   // the image to write
    std::string size;   // parseSize form
    bool force = false; // replace an existing file
};

// `mkfs.ext4 -d DIR` on a new sparse file: written under a temporary name next to FILE
// and renamed over it only once complete, so a failure leaves nothing (and an existing
// file untouched). Returns {file, dir, size, size_text, allocated, allocated_text,
// output}: sizes in bytes, and mkfs's output.
nlohmann::json createImage(const ImageRequest &request);

// Find a program of e2fsprogs on PATH, /usr/sbin or /sbin; throws naming the package.
std::string findProgram(const std::string &name);

} // namespace mobileops::common
