// `quota: loop`: the area's data is an ext4 filesystem in a sparse image file, attached to
// a loop device with LO_FLAGS_AUTOCLEAR and mounted on <home>/data in the host's mount
// namespace. The device goes with the last mount, so nothing needs detaching; after a
// reboot the image is checked (e2fsck -p) and mounted again on first use. Writing past the
// size fails with ENOSPC for everyone, root included (mkfs -m 0 reserves nothing).
#include "Quota.h"
#include "QuotaInternal.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Loop.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>

namespace mobileops::storage {

using common::quote;
using common::sysError;

namespace {

void mountImage(const std::string &image, const std::string &target,
                const std::vector<std::string> &options) {
    MountOptions mo = parseMountOptions(options);
    common::LoopDevice dev(image, false);
    if (::mount(dev.path().c_str(), target.c_str(), "ext4", mo.flags,
                mo.data.empty() ? nullptr : mo.data.c_str()) < 0)
        throw sysError("mount " + quote(image) + " (" + dev.path() + ") on " + quote(target),
                       errno);
}

void unmount(const std::string &target) {
    if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT) {
        int err = errno;
        if (err == EBUSY)
            throw sdk::Error(MO_E_BUSY, "unmount " + quote(target) +
                                            ": busy (a process on the host has a file open there)");
        throw sysError("unmount " + quote(target), err);
    }
}

// A fresh filesystem holds lost+found; a fresh volume should be empty, as a plain
// directory is: database initialisers (postgres, mysql) refuse a non-empty directory.
void dropLostFound(const std::string &root) { ::rmdir((root + "/lost+found").c_str()); }

void syncFile(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw sysError("open " + quote(path), errno);
    int r = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (r < 0) throw sysError("sync " + quote(path), err);
}

std::string parentOf(const std::string &path) { return path.substr(0, path.rfind('/')); }

class LoopQuota : public QuotaBackend {
public:
    void create(Area &area) override {
        if (!area.size) throw sdk::Error(MO_E_INVALID, "a loop volume needs a size");
        if (::mkdir(area.data().c_str(), 0755) < 0)
            throw sysError("create " + quote(area.data()), errno);
        try {
            // The empty data directory is the tree to copy in: mkfs gives the root its mode.
            common::createImage({area.data(), area.image(), std::to_string(area.size), false});
            mountImage(area.image(), area.data(), area.mountOptions);
            dropLostFound(area.data());
        } catch (...) {
            if (fsutil::isMountPoint(area.data())) ::umount2(area.data().c_str(), MNT_DETACH);
            ::unlink(area.image().c_str());
            ::rmdir(area.data().c_str());
            throw;
        }
    }

    bool active(const Area &area) override {
        for (const auto &m : fsutil::mountTable()) {
            if (m.mountPoint != area.data()) continue;
            for (const auto &dev : common::loopDevicesOf(area.image()))
                if (dev == m.source) return true;
        }
        return false;
    }

    bool activate(const Area &area) override {
        if (active(area)) return false;
        if (fsutil::isMountPoint(area.data()))
            throw sdk::Error(MO_E_STATE, quote(area.data()) +
                                             " has something else mounted on it, not " +
                                             quote(area.image()));
        if (::access(area.image().c_str(), F_OK) < 0)
            throw sysError("volume image " + quote(area.image()), errno);
        common::checkImage(area.image(), false); // after a crash or a reboot: e2fsck -p
        mountImage(area.image(), area.data(), area.mountOptions);
        return true;
    }

    void deactivate(const Area &area) override {
        if (fsutil::isMountPoint(area.data())) unmount(area.data());
    }

    void destroy(const Area &area) override {
        deactivate(area);
        if (::unlink(area.image().c_str()) < 0 && errno != ENOENT)
            throw sysError("remove " + quote(area.image()), errno);
        if (::rmdir(area.data().c_str()) < 0 && errno != ENOENT)
            throw sysError("remove " + quote(area.data()), errno);
    }

    Usage usage(const Area &area) override {
        struct statvfs st;
        if (!active(area) || ::statvfs(area.data().c_str(), &st) < 0)
            throw sdk::Error(MO_E_STATE, quote(area.data()) + " is not mounted");
        return {(st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize};
    }

    // A fresh image of the same size, filled while mounted on a temporary directory, then
    // renamed over the old image file (one atomic step) and mounted in its place.
    void replace(Area &area, const std::function<void(const std::string &)> &fill) override {
        std::string mnt = fsutil::tempDir(area.home, ".restore-");
        std::string image = mnt + ".img";
        struct stat root;
        bool haveRoot = active(area) && ::stat(area.data().c_str(), &root) == 0;
        try {
            ::chmod(mnt.c_str(), 0755);
            common::createImage({mnt, image, std::to_string(area.size), false});
            mountImage(image, mnt, area.mountOptions);
            dropLostFound(mnt);
            if (haveRoot) {
                ::chmod(mnt.c_str(), root.st_mode & 07777);
                if (::chown(mnt.c_str(), root.st_uid, root.st_gid) < 0)
                    throw sysError("chown " + quote(mnt), errno);
            }
            fill(mnt);
            unmount(mnt);
            syncFile(image);
        } catch (...) {
            if (fsutil::isMountPoint(mnt)) ::umount2(mnt.c_str(), MNT_DETACH);
            ::unlink(image.c_str());
            ::rmdir(mnt.c_str());
            throw;
        }
        ::rmdir(mnt.c_str());
        try {
            deactivate(area);
        } catch (...) {
            ::unlink(image.c_str());
            throw;
        }
        if (::rename(image.c_str(), area.image().c_str()) < 0) {
            int err = errno;
            ::unlink(image.c_str());
            activate(area);
            throw sysError("rename " + quote(image) + " to " + quote(area.image()), err);
        }
        syncFile(parentOf(area.image()));
        mountImage(area.image(), area.data(), area.mountOptions);
    }
};

} // namespace

std::unique_ptr<QuotaBackend> makeLoopQuota() { return std::make_unique<LoopQuota>(); }

} // namespace mobileops::storage
