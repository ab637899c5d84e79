#include "Backup.h"

#include "Archive.h"
#include <mobileops/common/Progress.h>

#include <mobileops/common/Errors.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <fstream>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

namespace {
std::string formatNow(const char *format) {
    std::time_t now = std::time(nullptr);
    std::tm tm;
    ::gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, format, &tm);
    return buf;
}
} // namespace

std::string timestamp() { return formatNow("%Y-%m-%dT%H:%M:%SZ"); }
std::string fileTimestamp() { return formatNow("%Y%m%dT%H%M%SZ"); }

json writeBackup(const std::string &source, const std::string &file, Progress &progress,
                 const std::string &label) {
    WriteOptions options;
    options.compression = Compression::Zstd;
    options.overlayWhiteouts = false;
    options.rootEntry = true;
    progress.start(file, label + " -> " + file, 0);
    options.progress = [&](uint64_t written) { progress.update(file, written); };
    WriteResult r;
    try {
        r = writeTree(source, file, options);
    } catch (...) {
        progress.finish(file, "failed");
        throw;
    }
    progress.finish(file, Progress::bytes(r.size));
    return {{"file", file}, {"sha256", r.digest}, {"size", r.size}, {"created", timestamp()}};
}

void writeChecksumFile(const std::string &file, const std::string &digest) {
    std::string path = file + ".sha256", tmp = path + ".partial";
    std::string base = file.substr(file.rfind('/') + 1);
    std::string line = digest.substr(digest.find(':') + 1) + "  " + base + "\n";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << line;
        out.flush();
        if (!out) throw common::sysError("write " + quote(tmp), errno ? errno : EIO);
    }
    if (::rename(tmp.c_str(), path.c_str()) < 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        throw common::sysError("rename " + quote(tmp) + " to " + quote(path), err);
    }
}

std::string readChecksumFile(const std::string &file) {
    std::ifstream in(file + ".sha256");
    std::string hex;
    if (!(in >> hex)) return {};
    if (hex.rfind("sha256:", 0) == 0) hex.erase(0, 7);
    return "sha256:" + hex;
}

void restoreBackup(const std::string &archive, const std::string &target, Progress &progress,
                   const std::string &label) {
    ExtractOptions options;
    options.whiteouts = Whiteouts::Refuse;
    options.allowDevices = false;
    options.createTarget = false;
    struct stat st;
    progress.start(archive, archive + " -> " + label,
                   ::stat(archive.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0);
    options.progress = [&](uint64_t done, uint64_t) { progress.update(archive, done); };
    try {
        // Every backup holds at least its root entry: an archive with none (an empty
        // file reads as one) is not a backup, and would leave the data empty.
        if (extract(archive, target, options).entries == 0)
            throw sdk::Error(MO_E_INVALID, "holds no entries");
    } catch (const sdk::Error &e) {
        progress.finish(archive, "failed");
        throw common::wrap(e, "backup " + quote(archive));
    }
    progress.finish(archive);
}

} // namespace mobileops::storage
