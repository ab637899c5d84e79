// A container's journal: the lines it wrote, in order, in append-only segment files.
//
// Layout of a journal directory (one per container, <logs dir>/<container id>/):
//   <16 hex digits>.log  segments; the name is the segment's start offset. Offsets are
//                        global and only grow: a record's offset (the segment's start +
//                        its position in the file) names it for ever, also after the
//                        segments before it were rotated away.
//   writer.lock          flock(LOCK_EX) by the one writer while it is open.
//   index.db             the search index (Index.h); not the journal's business.
//
// A record is a 16-byte header followed by `length` bytes of data (host byte order):
//   uint32 length | uint8 type | uint8 flags | uint16 magic (0x4A4C) | int64 time (ns)
// Types: 1 stdout line, 2 stderr line (the data is the line without its newline, any
// bytes), 3 start of a run, 4 end of a run (data: a small JSON object or empty).
// Flag kPartial: the line continues in the next record of the same stream (it was longer
// than the line limit, or the writer flushed it before its newline came).
//
// A writer killed in the middle of a write leaves a torn record at the end of the last
// segment: readers treat it as not yet written, the next writer truncates it away.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mobileops::logcollector {

enum class RecordType : uint8_t { out = 1, err = 2, start = 3, end = 4 };
enum : uint8_t { kPartial = 1 };

constexpr uint16_t kRecordMagic = 0x4A4C;
constexpr size_t kHeaderSize = 16;
constexpr size_t kMaxRecordData = 1u << 20; // anything longer in a header is corruption

struct Record {
    uint64_t offset = 0; // of the header
    RecordType type = RecordType::out;
    uint8_t flags = 0;
    int64_t time = 0;      // ns since the epoch (CLOCK_REALTIME when the writer read it)
    std::string_view data; // valid until the reader's next call
    uint64_t next() const { return offset + kHeaderSize + data.size(); }
    bool isLine() const { return type == RecordType::out || type == RecordType::err; }
    bool partial() const { return (flags & kPartial) != 0; }
};

struct Segment {
    uint64_t start = 0; // global offset of its first byte
    uint64_t size = 0;  // bytes in the file now
    int64_t mtime = 0;  // ns
    std::string path;
};

// The segments in `dir`, oldest first. An absent directory has none.
std::vector<Segment> listSegments(const std::string &dir);

struct Retention {
    uint64_t maxSize = 100ull << 20; // all segments together; 0: no size limit
    int64_t maxAge = 0;              // ns; segments whose newest record is older go; 0: none
    uint64_t segmentSize = 0;        // 0: maxSize / 8 within [64 KiB, 64 MiB]
    uint64_t effectiveSegmentSize() const;
};

// The one writer of a journal. Records are batched with add() and written by commit() in
// one write(2) that never straddles segments; after it the writer rotates (a new segment
// once the current one reached the segment size) and applies the retention (removes the
// oldest segments, never the current one, while the total is over maxSize or they are
// older than maxAge). A failed write is retried (ENOSPC, EIO...) with back-off for up to
// `retryFor`: the caller, and through its pipe the container, waits rather than losing
// lines; past that it throws.
class JournalWriter {
public:
    // Creates `dir` (0750), takes writer.lock waiting up to lockTimeout (then throws
    // Error MO_E_BUSY naming the holder's pid when known), truncates a torn tail of the
    // last segment, applies the retention and appends a start record.
    JournalWriter(std::string dir, Retention retention,
                  std::chrono::milliseconds lockTimeout = std::chrono::seconds(10),
                  std::chrono::milliseconds retryFor = std::chrono::seconds(60));
    // Commits what is pending; does not write the end record (see finish()).
    ~JournalWriter();
    JournalWriter(const JournalWriter &) = delete;
    JournalWriter &operator=(const JournalWriter &) = delete;

    // Queue a record; data may hold any bytes; longer than kMaxRecordData is the
    // caller's bug (throws).
    void add(RecordType type, uint8_t flags, int64_t time, std::string_view data);
    // Write the queued records. Returns the journal's end offset afterwards.
    uint64_t commit();
    // Commit, append the end record (data: `endData`) and release writer.lock. The
    // writer accepts nothing afterwards.
    void finish(std::string_view endData = {});

    uint64_t end() const { return _end; } // global offset after the last committed record
    const std::string &dir() const { return _dir; }
    const Retention &retention() const { return _retention; }

private:
    void openSegment(uint64_t start);
    void rotateAndRetain();
    void writeAll(const char *data, size_t len);

    std::string _dir;
    Retention _retention;
    std::chrono::milliseconds _retryFor;
    int _lockFd = -1;
    int _fd = -1;           // current segment
    uint64_t _segStart = 0; // its start offset
    std::string _segPath;
    uint64_t _end = 0;
    uint64_t _oldest = 0; // start of the oldest segment kept
    std::string _pending;
    bool _finished = false;
};

// Sequential reading from any offset, across segments, while a writer appends. Never
// blocks, never locks out the writer. One reader per thread.
class JournalReader {
public:
    explicit JournalReader(std::string dir);
    ~JournalReader();
    JournalReader(const JournalReader &) = delete;
    JournalReader &operator=(const JournalReader &) = delete;

    // Position at `offset` (a record's offset, or 0 for the oldest record still kept).
    // An offset in a segment rotated away moves to the oldest kept record and counts
    // the bytes skipped in gap(). Returns the position.
    uint64_t seek(uint64_t offset);
    // The next record, or nothing at the current end (a torn or half-written record
    // counts as the end until it is complete). Follows into the next segment when the
    // current one is finished (a newer segment exists) and read to its end.
    std::optional<Record> next();
    // The record at `offset` exactly (random access for search hits), or nothing when it
    // was rotated away or is not a record boundary.
    std::optional<Record> at(uint64_t offset);

    uint64_t position() const { return _pos; }
    // Bytes that were rotated away between where reading was asked to go and what it
    // found; reset by the call.
    uint64_t takeGap();
    // The journal's end now: the last segment's start + size (a torn tail included).
    uint64_t end() const;
    // Whether a writer holds writer.lock right now.
    bool writerActive() const;
    const std::string &dir() const { return _dir; }

private:
    bool openSegmentAt(uint64_t offset);
    void closeSegment();
    bool fill(size_t need);
    bool advance();
    bool zeroTail(uint64_t offset);
    std::optional<Record> notYet();
    std::optional<Record> readAt(uint64_t offset);

    std::string _dir;
    int _fd = -1;
    Segment _seg;      // the one _fd reads; its size is not kept current
    uint64_t _pos = 0; // global offset of the next record
    uint64_t _gap = 0;
    std::vector<char> _buf; // bytes read ahead from the current segment
    size_t _bufLen = 0;     // of which valid
    uint64_t _bufAt = 0;    // global offset of _buf[0]

    // at(): its own segment and buffer, so random access leaves next() where it was.
    int _atFd = -1;
    uint64_t _atStart = 0, _atLimit = 0; // the segment's start and its successor's
    std::string _atPath;
    std::vector<char> _atBuf;
};

} // namespace mobileops::logcollector
