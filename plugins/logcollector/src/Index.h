// The search index of one journal: <journal dir>/index.db, SQLite in WAL mode.
//
// One contentless FTS5 table per segment (fts_<16 hex start>, tokenizer unicode61,
// detail=full so phrases work), rowid = the record's global offset: a hit is read back
// from the journal, nothing is stored twice, and a segment rotated away is one DROP
// TABLE. `progress` holds the offset indexing reached, advanced in the same transaction
// as the rows, so indexing is exactly once whoever runs it (the capture's thread, a
// search catching up) and resumes after any crash. Also kept here: per-segment summaries
// (first/last time, lines and bytes per stream) and the cgroup samples for analysis.
#pragma once

#include "Journal.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

struct sqlite3;

namespace mobileops::logcollector {

struct SegmentSummary {
    uint64_t start = 0;
    int64_t firstTime = 0, lastTime = 0; // 0 when no line yet
    uint64_t lines[3] = {0, 0, 0};       // [1] stdout, [2] stderr
    uint64_t bytes[3] = {0, 0, 0};
};

struct Sample {
    int64_t time = 0;
    nlohmann::json stats; // the cgroup service's stats JSON {cpu, memory, pids, io}
};

struct SearchQuery {
    std::string pattern;          // user text: its words as a phrase, the last one a prefix
    bool raw = false;             // pattern is an FTS5 query expression as is
    int64_t since = 0, until = 0; // ns, 0: open
    int stream = 0;               // 0 both, 1 stdout, 2 stderr
    size_t limit = 100;           // the newest `limit` hits
};

struct Hit {
    uint64_t offset = 0;
    int stream = 1;
    int64_t time = 0;
    std::string line; // the record's bytes (a partial record joined with its continuation)
};

class Index {
public:
    // Opens (creates) <dir>/index.db. Throws Error naming the file when it cannot.
    explicit Index(const std::string &dir);
    ~Index();
    Index(const Index &) = delete;
    Index &operator=(const Index &) = delete;

    // Index the records from progress up to the journal's end as it is now, at most
    // `maxRecords`, in transactions of up to 20,000 records; drops the tables (and
    // summaries) of segments no longer on disk. Returns the records indexed. Concurrent
    // callers in several processes are safe (BEGIN IMMEDIATE, progress re-read inside).
    uint64_t update(JournalReader &reader, uint64_t maxRecords = UINT64_MAX);
    uint64_t indexedTo() const;

    // Matches, oldest first, of the newest `limit` (after stream/time filters and, unless
    // raw, a case-insensitive check that the line contains the pattern). `more` is set
    // when there were more than `limit`.
    std::vector<Hit> search(JournalReader &reader, const SearchQuery &query, bool *more) const;

    std::vector<SegmentSummary> summaries() const;

    void addSample(const Sample &sample);
    std::vector<Sample> samples(int64_t since = 0, int64_t until = 0) const;

    // The FTS5 expression for a user pattern (exposed for tests): words quoted as one
    // phrase, the last word a prefix; empty pattern: Error MO_E_INVALID.
    static std::string ftsQuery(const std::string &pattern);

private:
    sqlite3 *_db = nullptr;
    std::string _path;
};

} // namespace mobileops::logcollector
