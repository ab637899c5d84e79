// Where the journals live and whose they are: one directory per container under the logs
// directory (configuration `logcollector.dir`, default <root_dir>/logs), named by the
// container's id; names come from the state store's container records. Also the
// configured retention and the repair of what removed containers left.
#pragma once

#include "Journal.h"

#include <mobileops/common/Host.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::logcollector {

struct LogOwner {
    std::string id, name;
    bool exists = false; // the container record exists (a journal may outlive it until gc)
};

// "90s", "10m", "1h30m", "7d", "2w": ns. Throws MO_E_INVALID naming `what`.
int64_t parseDuration(const std::string &text, const std::string &what);

class LogStore {
public:
    LogStore(const common::Host &host, std::string dir);

    const std::string &dir() const { return _dir; }
    std::string journalDir(const std::string &containerId) const;

    // A container by id, unique id prefix (3+ hex digits) or name, with or without a
    // journal; a journal whose container is gone is still found by id or prefix.
    // Throws MO_E_NOT_FOUND "no such container `x`".
    LogOwner resolve(const std::string &ref) const;
    // Every journal on disk, oldest container first (by the directory's mtime).
    std::vector<LogOwner> all() const;

    // The retention from the configuration (`logcollector.max_size`, default 100Mi;
    // `logcollector.max_age`, default none), overridden by `maxSize`/`maxAge` when given.
    Retention retention(const std::string &maxSize = {}, const std::string &maxAge = {}) const;

    void remove(const std::string &containerId) const;
    // Journals of containers that no longer exist and have no writer: removed. Returns
    // [{container, what}].
    nlohmann::json gc() const;

private:
    const common::Host &_host;
    std::string _dir;
};

} // namespace mobileops::logcollector
