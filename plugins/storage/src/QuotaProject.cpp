// `quota: project`: the area's data is a plain directory on the class's own filesystem,
// tagged with a project id of its own (FS_IOC_FSSETXATTR, with PROJINHERIT so everything
// created below inherits it) and a block hard limit on that id (quotactl Q_SETQUOTA,
// which ext4 and XFS both implement). Writing past the size fails with EDQUOT.
//
// The filesystem must enforce project quotas: ext4 made with `-O quota,project` (or
// tune2fs) and mounted `-o prjquota`, or XFS mounted `-o prjquota`. Anything else is
// refused rather than left unlimited. ext4 lets a process with CAP_SYS_RESOURCE write past
// a hard limit (fs/quota/dquot.c, ignore_hardlimit); containers run without it.
#include "Quota.h"
#include "QuotaInternal.h"

#include <mobileops/common/Errors.h>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mobileops::storage {

using common::quote;
using common::sysError;

namespace {

// Ids handed out from here up: far above what /etc/projid usually holds.
constexpr uint32_t kFirstProjectId = 0x6d6f0000; // "mo"
constexpr uint32_t kProjectIds = 1u << 16;

class Fd {
public:
    explicit Fd(int fd) : _fd(fd) {}
    ~Fd() {
        if (_fd >= 0) ::close(_fd);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const { return _fd; }

private:
    int _fd;
};

Fd openDir(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw sysError("open " + quote(path), errno);
    return Fd(fd);
}

// quotactl for project quotas on the filesystem holding `path`: quotactl_fd (Linux 5.14),
// else quotactl on the block device the mount table names.
int projectQuotactl(const std::string &path, int cmd, uint32_t id, void *addr) {
#ifdef SYS_quotactl_fd
    {
        Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) return -1;
        long r = ::syscall(SYS_quotactl_fd, fd.get(), QCMD(cmd, PRJQUOTA), id, addr);
        if (r == 0 || errno != ENOSYS) return static_cast<int>(r);
    }
#endif
    auto mount = fsutil::mountOf(path);
    if (!mount) {
        errno = ENOENT;
        return -1;
    }
    return ::quotactl(QCMD(cmd, PRJQUOTA), mount->source.c_str(), static_cast<int>(id),
                      static_cast<caddr_t>(addr));
}

struct dqblk getQuota(const std::string &path, uint32_t id) {
    struct dqblk q = {};
    if (projectQuotactl(path, Q_GETQUOTA, id, &q) < 0)
        throw sysError("read the quota of project " + std::to_string(id) + " on " + quote(path),
                       errno);
    return q;
}

void setLimit(const std::string &path, uint32_t id, uint64_t bytes) {
    struct dqblk q = {};
    q.dqb_bhardlimit = (bytes + QIF_DQBLKSIZE - 1) / QIF_DQBLKSIZE;
    q.dqb_valid = QIF_BLIMITS | QIF_ILIMITS;
    if (projectQuotactl(path, Q_SETQUOTA, id, &q) < 0)
        throw sysError("set the limit of project " + std::to_string(id) + " on " + quote(path),
                       errno);
}

void setProject(const std::string &dir, uint32_t id) {
    Fd fd = openDir(dir);
    struct fsxattr fsx = {};
    if (::ioctl(fd.get(), FS_IOC_FSGETXATTR, &fsx) < 0)
        throw sysError("read the attributes of " + quote(dir), errno);
    fsx.fsx_projid = id;
    fsx.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    if (::ioctl(fd.get(), FS_IOC_FSSETXATTR, &fsx) < 0)
        throw sysError("set project " + std::to_string(id) + " on " + quote(dir), errno);
}

// A project id nobody uses on the filesystem of `dir` (no usage, no limits), with a
// limit of `bytes` set on it before the lock on `lockDir` is let go, so that a concurrent
// create cannot pick it too.
uint32_t allocate(const std::string &dir, const std::string &lockDir, uint64_t bytes) {
    Fd lock = openDir(lockDir);
    if (::flock(lock.get(), LOCK_EX) < 0) throw sysError("lock " + quote(lockDir), errno);
    for (uint32_t id = kFirstProjectId; id < kFirstProjectId + kProjectIds; ++id) {
        struct dqblk q = getQuota(dir, id);
        if (q.dqb_curspace || q.dqb_curinodes || q.dqb_bhardlimit || q.dqb_bsoftlimit ||
            q.dqb_ihardlimit || q.dqb_isoftlimit)
            continue;
        setLimit(dir, id, bytes);
        return id;
    }
    throw sdk::Error(MO_E_BUSY, "no free project id on the filesystem of " + quote(dir));
}

class ProjectQuota : public QuotaBackend {
public:
    void create(Area &area) override {
        if (!area.size) throw sdk::Error(MO_E_INVALID, "a project-quota volume needs a size");
        std::string why;
        if (!projectQuotaSupported(area.home, &why)) throw sdk::Error(MO_E_UNSUPPORTED, why);
        if (::mkdir(area.data().c_str(), 0755) < 0)
            throw sysError("create " + quote(area.data()), errno);
        uint32_t id = 0;
        try {
            id = allocate(area.data(), area.home, area.size);
            setProject(area.data(), id);
        } catch (...) {
            if (id) setLimit(area.data(), id, 0);
            ::rmdir(area.data().c_str());
            throw;
        }
        area.projectId = id;
    }

    bool activate(const Area &) override { return false; }
    bool active(const Area &area) override { return ::access(area.data().c_str(), F_OK) == 0; }
    void deactivate(const Area &) override {}

    void destroy(const Area &area) override {
        fsutil::removeTree(area.data());
        if (area.projectId) setLimit(area.home, area.projectId, 0);
    }

    Usage usage(const Area &area) override {
        struct dqblk q = getQuota(area.data(), area.projectId);
        uint64_t limit = q.dqb_bhardlimit * QIF_DQBLKSIZE;
        return {q.dqb_curspace, limit > q.dqb_curspace ? limit - q.dqb_curspace : 0};
    }

    // The fresh directory gets a project id of its own with the same limit, so the old
    // and the new data each have the full size while both exist.
    void replace(Area &area, const std::function<void(const std::string &)> &fill) override {
        uint32_t fresh = 0;
        exchangeReplace(
            area,
            [&](const std::string &dir) {
                fresh = allocate(dir, area.home, area.size);
                setProject(dir, fresh);
            },
            fill,
            [&](const std::string &dir) {
                if (fresh) setLimit(parentOf(dir), fresh, 0);
            });
        if (area.projectId) setLimit(area.home, area.projectId, 0);
        area.projectId = fresh;
    }

private:
    static std::string parentOf(const std::string &path) { return path.substr(0, path.rfind('/')); }
};

} // namespace

std::unique_ptr<QuotaBackend> makeProjectQuota() { return std::make_unique<ProjectQuota>(); }

bool projectQuotaSupported(const std::string &dir, std::string *why) {
    auto fail = [&](const std::string &reason) {
        if (why)
            *why = reason + " (`quota: project` needs ext4 made with `-O quota,project` and "
                            "mounted `-o prjquota`, or XFS mounted `-o prjquota`; or use "
                            "`quota: loop`)";
        return false;
    };
    auto mount = fsutil::mountOf(dir);
    if (!mount) return fail("cannot find the filesystem of " + quote(dir));
    if (mount->fstype != "ext4" && mount->fstype != "xfs")
        return fail(quote(dir) + " is on " + mount->fstype + " at " + quote(mount->mountPoint));
    std::string opts = "," + mount->superOptions + "," + mount->options + ",";
    if (opts.find(",prjquota,") == std::string::npos && opts.find(",pquota,") == std::string::npos)
        return fail(quote(dir) + " is on " + mount->fstype + " at " + quote(mount->mountPoint) +
                    " mounted without `prjquota`");
    struct if_dqinfo info = {};
    std::string existing = dir;
    while (::access(existing.c_str(), F_OK) < 0 && existing.find('/', 1) != std::string::npos)
        existing = existing.substr(0, existing.rfind('/'));
    if (projectQuotactl(existing, Q_GETINFO, 0, &info) < 0)
        return fail("project quotas on " + quote(mount->mountPoint) +
                    " are not on: " + std::strerror(errno));
    return true;
}

} // namespace mobileops::storage
