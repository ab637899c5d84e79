#include "LogStore.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Loop.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

namespace mobileops::logcollector {

using common::Error;
using common::quote;
using nlohmann::json;

namespace {

const char kContainerKind[] = "container";

bool isHex(const std::string &s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

std::string shortId(const std::string &id) { return id.substr(0, 12); }

} // namespace

int64_t parseDuration(const std::string &text, const std::string &what) {
    auto bad = [&] {
        return Error(MO_E_INVALID, "invalid " + what + " " + quote(text) +
                                       ": expected a duration like 90s, 10m, 1h30m, 7d or 2w");
    };
    if (text.empty()) throw bad();
    int64_t total = 0;
    size_t i = 0;
    while (i < text.size()) {
        size_t start = i;
        int64_t n = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            if (n > (INT64_MAX / 10)) throw bad();
            n = n * 10 + (text[i++] - '0');
        }
        if (i == start || i == text.size()) throw bad();
        int64_t unit;
        switch (text[i++]) {
        case 's':
            unit = 1'000'000'000;
            break;
        case 'm':
            unit = 60'000'000'000;
            break;
        case 'h':
            unit = 3'600'000'000'000;
            break;
        case 'd':
            unit = 86'400'000'000'000;
            break;
        case 'w':
            unit = 604'800'000'000'000;
            break;
        default:
            throw bad();
        }
        if (n > (INT64_MAX - total) / unit) throw bad();
        total += n * unit;
    }
    return total;
}

LogStore::LogStore(const common::Host &host, std::string dir) : _host(host), _dir(std::move(dir)) {}

std::string LogStore::journalDir(const std::string &containerId) const {
    return _dir + "/" + containerId;
}

LogOwner LogStore::resolve(const std::string &ref) const {
    if (ref.empty()) throw Error(MO_E_INVALID, "no container given");
    auto owner = [](const json &rec) {
        std::string id = rec.value("id", "");
        return LogOwner{id, rec.value("name", shortId(id)), true};
    };
    if (ref.size() == 64 && isHex(ref))
        if (auto rec = _host.get(kContainerKind, ref)) return owner(*rec);
    if (auto rec = _host.find(kContainerKind, ref)) return owner(*rec);
    if (isHex(ref) && ref.size() >= 3) {
        std::optional<LogOwner> found;
        auto take = [&](LogOwner o) {
            if (found && found->id != o.id)
                throw Error(MO_E_INVALID, quote(ref) + " matches more than one container");
            found = std::move(o);
        };
        for (const json &rec : _host.list(kContainerKind))
            if (rec.value("id", "").compare(0, ref.size(), ref) == 0) take(owner(rec));
        for (const LogOwner &o : all())
            if (!o.exists && o.id.compare(0, ref.size(), ref) == 0) take(o);
        if (found) return *found;
    }
    throw Error(MO_E_NOT_FOUND, "no such container " + quote(ref));
}

std::vector<LogOwner> LogStore::all() const {
    std::vector<std::pair<int64_t, LogOwner>> found;
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator(_dir, ec)) {
        std::string id = entry.path().filename();
        if (id.size() != 64 || !isHex(id)) continue;
        struct stat st;
        if (::stat(entry.path().c_str(), &st) != 0) continue;
        LogOwner o{id, shortId(id), false};
        if (auto rec = _host.get(kContainerKind, id)) {
            o.name = rec->value("name", o.name);
            o.exists = true;
        }
        found.emplace_back(int64_t(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec,
                           std::move(o));
    }
    std::sort(found.begin(), found.end(),
              [](const auto &a, const auto &b) { return a.first < b.first; });
    std::vector<LogOwner> out;
    for (auto &f : found) out.push_back(std::move(f.second));
    return out;
}

Retention LogStore::retention(const std::string &maxSize, const std::string &maxAge) const {
    Retention r;
    std::string size = !maxSize.empty() ? maxSize : _host.config("logcollector.max_size");
    std::string age = !maxAge.empty() ? maxAge : _host.config("logcollector.max_age");
    if (!size.empty()) {
        try {
            r.maxSize = common::parseSize(size);
        } catch (const Error &e) {
            throw Error(MO_E_INVALID, "log max size: " + std::string(e.what()));
        }
        if (r.maxSize != 0 && r.maxSize < (64u << 10))
            throw Error(MO_E_INVALID,
                        "log max size " + quote(size) + " is below the minimum of 64Ki");
    }
    if (!age.empty() && age != "0") r.maxAge = parseDuration(age, "log max age");
    return r;
}

void LogStore::remove(const std::string &containerId) const {
    if (containerId.size() != 64 || !isHex(containerId))
        throw Error(MO_E_INVALID, "not a container id " + quote(containerId));
    std::error_code ec;
    std::filesystem::remove_all(journalDir(containerId), ec);
    if (ec) throw common::sysError("remove the log of " + quote(shortId(containerId)), ec.value());
}

json LogStore::gc() const {
    json released = json::array();
    for (const LogOwner &o : all()) {
        if (o.exists) continue;
        JournalReader reader(journalDir(o.id));
        if (reader.writerActive()) continue;
        remove(o.id);
        released.push_back({{"container", o.id}, {"what", "log of a removed container"}});
    }
    return released;
}

} // namespace mobileops::logcollector
