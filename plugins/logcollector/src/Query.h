// Reading journals for people and programs: times given on the command line, the line
// formats (plain, with timestamps, JSON), `logs show` with --tail/--since/--until/--stream
// and --follow, and the cursor reads `logs monitor` polls with.
#pragma once

#include "Journal.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mobileops::logcollector {

// A time from the command line, in ns since the epoch: RFC 3339 ("2026-11-23T05:12:33Z",
// fractions up to ns, "+01:00" offsets, a bare date "2026-11-23" is its midnight UTC),
// Unix seconds ("1795000000", "1795000000.5"), or a duration before `now` ("90s", "10m",
// "1h30m", "2d"). Anything else: Error MO_E_INVALID naming `what` (e.g. "--since") and
// the accepted forms.
int64_t parseTime(const std::string &text, const std::string &what, int64_t now);
int64_t nowNs();

// "2026-11-23T05:12:33.727227470Z"
std::string formatTime(int64_t ns);

// One line as a JSON object: {time, container, name, stream, line, partial?, offset};
// a line that is not valid UTF-8 has `line` with U+FFFD for the bad bytes and `data`
// with the exact bytes in base64.
nlohmann::json lineJson(const Record &record, const std::string &containerId,
                        const std::string &name);
bool validUtf8(std::string_view s);
std::string base64(std::string_view bytes);

// For the writers of many lines (show, export): the same bytes as formatTime and
// lineJson(...).dump(), appended without building strings or JSON values per line.
constexpr size_t kTimeLength = 30;        // formatTime's length for any time an int64 ns can hold
void formatTimeTo(int64_t ns, char *out); // writes kTimeLength bytes, no terminator
void appendLineJson(std::string &out, const Record &record, std::string_view containerId,
                    std::string_view name);

struct ShowOptions {
    std::string containerId, name;
    int64_t since = 0, until = 0; // ns, 0: open
    int64_t tail = -1;            // the last N lines (after filters); -1: all
    int stream = 0;               // 0 both, 1 stdout, 2 stderr
    bool timestamps = false;      // plain: prefix each line with formatTime + " "
    bool json = false;            // JSON lines (lineJson) on outFd, both streams
    bool follow = false;          // then wait for more until the writer is gone
    bool fromEnd = false;         // start at the journal's end (attach)
    int pollMs = 100;             // follow: how often to look for more
};

// Copy the lines that match to outFd (stdout lines; stderr lines to errFd, or outFd when
// errFd < 0; JSON always to outFd). A line split in partial records is printed as the
// one line it was. With follow, continues across rotation with no line twice and none
// skipped (a warning on errFd says how many bytes rotation removed before they could be
// read, when that happens) and returns once the journal's writer is gone and
// everything is copied. Returns the lines written. Stops quietly when outFd is a closed
// pipe (EPIPE).
uint64_t show(const std::string &dir, const ShowOptions &options, int outFd, int errFd);

// Cursor reads: up to `limit` line records after `cursor` (a record offset; 0: from the
// oldest; UINT64_MAX: from the end now), as lineJson objects. `cursor` is advanced.
std::vector<nlohmann::json> readSince(const std::string &dir, const std::string &containerId,
                                      const std::string &name, uint64_t &cursor, size_t limit);

} // namespace mobileops::logcollector
