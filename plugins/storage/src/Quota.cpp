#include "Quota.h"

#include "QuotaInternal.h"

#include <mobileops/common/Errors.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace mobileops::storage {

using common::quote;
using common::sysError;
using nlohmann::json;

json Area::toJson() const {
    json j = {{"home", home}, {"data", data()}, {"mechanism", toString(mechanism)}, {"size", size}};
    if (mechanism == QuotaMechanism::Loop) {
        j["image"] = image();
        j["mountOptions"] = mountOptions;
    }
    if (mechanism == QuotaMechanism::Project) j["projectId"] = projectId;
    return j;
}

Area Area::fromJson(const json &j) {
    Area a;
    a.home = j.at("home").get<std::string>();
    a.mechanism =
        parseQuotaMechanism(j.at("mechanism").get<std::string>()).value_or(QuotaMechanism::None);
    a.size = j.value("size", uint64_t(0));
    if (j.contains("mountOptions"))
        a.mountOptions = j["mountOptions"].get<std::vector<std::string>>();
    a.projectId = j.value("projectId", uint32_t(0));
    return a;
}

namespace fsutil {

void makeDirs(const std::string &path, mode_t mode) {
    for (size_t p = 1; (p = path.find('/', p)) != std::string::npos; ++p)
        if (::mkdir(path.substr(0, p).c_str(), 0755) < 0 && errno != EEXIST)
            throw sysError("create " + quote(path.substr(0, p)), errno);
    if (::mkdir(path.c_str(), mode) < 0 && errno != EEXIST)
        throw sysError("create " + quote(path), errno);
}

namespace {
thread_local std::string tRemoveError;
thread_local uint64_t tUsage;
thread_local std::set<std::pair<dev_t, ino_t>> *tSeen;

int removeOne(const char *path, const struct stat *, int type, struct FTW *) {
    int r = (type == FTW_DP || type == FTW_D) ? ::rmdir(path) : ::unlink(path);
    if (r < 0 && errno != ENOENT) {
        tRemoveError = "remove " + quote(path) + ": " + std::strerror(errno);
        return 1;
    }
    return 0;
}

int countOne(const char *, const struct stat *st, int type, struct FTW *) {
    if (type == FTW_NS) return 0;
    if (st->st_nlink > 1 && !S_ISDIR(st->st_mode) &&
        !tSeen->insert({st->st_dev, st->st_ino}).second)
        return 0;
    tUsage += static_cast<uint64_t>(st->st_blocks) * 512;
    return 0;
}
} // namespace

void removeTree(const std::string &path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) return;
        throw sysError("remove " + quote(path), errno);
    }
    // A mount below would make this delete what it mounts (or fail half-way).
    if (auto mounts = mountsBelow(path); !mounts.empty())
        throw sdk::Error(MO_E_BUSY, "remove " + quote(path) + ": " + quote(mounts.front()) +
                                        " is still mounted");
    if (!S_ISDIR(st.st_mode)) {
        if (::unlink(path.c_str()) < 0) throw sysError("remove " + quote(path), errno);
        return;
    }
    // A tree may carry read-only or immutable-looking modes; root removes it anyway.
    tRemoveError.clear();
    if (::nftw(path.c_str(), removeOne, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
        throw sdk::Error(MO_E_INTERNAL,
                         tRemoveError.empty() ? "remove " + quote(path) + " failed" : tRemoveError);
}

uint64_t diskUsage(const std::string &path) {
    std::set<std::pair<dev_t, ino_t>> seen;
    tSeen = &seen;
    tUsage = 0;
    ::nftw(path.c_str(), countOne, 32, FTW_PHYS | FTW_MOUNT);
    tSeen = nullptr;
    return tUsage;
}

std::string tempDir(const std::string &parent, const std::string &prefix) {
    std::string tmpl = parent + "/" + prefix + "XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw sysError("create a directory in " + quote(parent), errno);
    return tmpl;
}

} // namespace fsutil

// Replace a plain directory's contents: `fill` a sibling, then swap the two names in one
// renameat2(RENAME_EXCHANGE) and remove the old tree under the sibling's name.
void exchangeReplace(const Area &area, const std::function<void(const std::string &)> &prepare,
                     const std::function<void(const std::string &)> &fill,
                     const std::function<void(const std::string &)> &discard) {
    std::string fresh = fsutil::tempDir(area.home, ".restore-");
    struct stat st;
    if (::stat(area.data().c_str(), &st) == 0) {
        ::chmod(fresh.c_str(), st.st_mode & 07777);
        if (::chown(fresh.c_str(), st.st_uid, st.st_gid) < 0) {
        }
    } else {
        ::chmod(fresh.c_str(), 0755);
    }
    try {
        if (prepare) prepare(fresh);
        fill(fresh);
    } catch (...) {
        try {
            fsutil::removeTree(fresh);
            if (discard) discard(fresh);
        } catch (...) {
        }
        throw;
    }
    if (::renameat2(AT_FDCWD, fresh.c_str(), AT_FDCWD, area.data().c_str(), RENAME_EXCHANGE) < 0) {
        int err = errno;
        if (err != ENOENT) {
            fsutil::removeTree(fresh);
            if (discard) discard(fresh);
            throw sysError("swap " + quote(fresh) + " with " + quote(area.data()), err);
        }
        // No data directory yet: a plain rename puts the new one in place.
        if (::rename(fresh.c_str(), area.data().c_str()) < 0)
            throw sysError("rename " + quote(fresh) + " to " + quote(area.data()), errno);
        return;
    }
    fsutil::removeTree(fresh); // now the old data
}

namespace {

class NoQuota : public QuotaBackend {
public:
    void create(Area &area) override {
        if (area.size)
            throw sdk::Error(MO_E_INVALID, "a size needs a class with `quota: loop` or "
                                           "`quota: project`; this one has `quota: none`");
        if (::mkdir(area.data().c_str(), 0755) < 0)
            throw sysError("create " + quote(area.data()), errno);
    }
    bool activate(const Area &) override { return false; }
    void deactivate(const Area &) override {}
    void destroy(const Area &area) override { fsutil::removeTree(area.data()); }
    Usage usage(const Area &area) override {
        return {fsutil::diskUsage(area.data()), std::nullopt};
    }
    bool active(const Area &area) override { return ::access(area.data().c_str(), F_OK) == 0; }
    void replace(Area &area, const std::function<void(const std::string &)> &fill) override {
        exchangeReplace(area, nullptr, fill, nullptr);
    }
};

} // namespace

std::unique_ptr<QuotaBackend> makeNoQuota() { return std::make_unique<NoQuota>(); }

std::unique_ptr<QuotaBackend> quotaBackend(QuotaMechanism mechanism) {
    switch (mechanism) {
    case QuotaMechanism::Loop:
        return makeLoopQuota();
    case QuotaMechanism::Project:
        return makeProjectQuota();
    case QuotaMechanism::None:
        return makeNoQuota();
    }
    return makeNoQuota();
}

} // namespace mobileops::storage
