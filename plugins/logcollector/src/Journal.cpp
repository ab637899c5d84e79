#include "Journal.h"

#include <mobileops/common/Errors.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mobileops::logcollector {

using common::Error;
using common::quote;
using common::sysError;

namespace {

constexpr size_t kReadAhead = 1u << 20;
constexpr uint64_t kMinSegment = 64ull << 10;
constexpr uint64_t kMaxSegment = 64ull << 20;

struct Header {
    uint32_t length;
    uint8_t type;
    uint8_t flags;
    uint16_t magic;
    int64_t time;
};
static_assert(sizeof(Header) == kHeaderSize);

Header readHeader(const char *p) {
    Header h;
    std::memcpy(&h, p, sizeof h);
    return h;
}

bool validHeader(const Header &h) {
    return h.magic == kRecordMagic && h.type >= 1 && h.type <= 4 && h.length <= kMaxRecordData;
}

int64_t nowNs() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string segmentName(uint64_t start) {
    char name[32];
    std::snprintf(name, sizeof name, "%016llx.log", static_cast<unsigned long long>(start));
    return name;
}

// The start offset a segment file name stands for; false for any other name.
bool parseSegmentName(const char *name, uint64_t *start) {
    if (std::strlen(name) != 20 || std::strcmp(name + 16, ".log") != 0) return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; ++i) {
        char c = name[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return false;
        v = (v << 4) | uint64_t(d);
    }
    *start = v;
    return true;
}

// Segment starts, sorted, without stat(): the cheap listing for the hot paths.
std::vector<uint64_t> listStarts(const std::string &dir) {
    std::vector<uint64_t> starts;
    DIR *d = ::opendir(dir.c_str());
    if (!d) {
        if (errno == ENOENT) return starts;
        throw sysError("log directory " + quote(dir), errno);
    }
    while (dirent *e = ::readdir(d)) {
        uint64_t start;
        if (parseSegmentName(e->d_name, &start)) starts.push_back(start);
    }
    ::closedir(d);
    std::sort(starts.begin(), starts.end());
    return starts;
}

void mkdirs(const std::string &dir) {
    if (::mkdir(dir.c_str(), 0750) == 0) return;
    if (errno == EEXIST) return;
    if (errno != ENOENT) throw sysError("create " + quote(dir), errno);
    auto slash = dir.find_last_of('/');
    if (slash == std::string::npos || slash == 0) throw sysError("create " + quote(dir), ENOENT);
    mkdirs(dir.substr(0, slash));
    if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST)
        throw sysError("create " + quote(dir), errno);
}

std::string baseName(const std::string &dir) {
    std::string d = dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    auto slash = d.find_last_of('/');
    return slash == std::string::npos ? d : d.substr(slash + 1);
}

// Length of the valid prefix of a segment: whole records with sound headers.
uint64_t validPrefix(int fd, uint64_t size, const std::string &path) {
    std::vector<char> buf(kReadAhead + kHeaderSize + kMaxRecordData); // any record fits
    uint64_t pos = 0;                                                 // the next record to check
    while (size - pos >= kHeaderSize) {
        size_t want = size_t(std::min<uint64_t>(buf.size(), size - pos));
        size_t got = 0;
        while (got < want) {
            ssize_t n = ::pread(fd, buf.data() + got, want - got, off_t(pos + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw sysError("read " + quote(path), errno);
            if (n == 0) break;
            got += size_t(n);
        }
        size_t at = 0;
        while (got - at >= kHeaderSize) {
            Header h = readHeader(buf.data() + at);
            if (!validHeader(h)) return pos + at;
            if (got - at < kHeaderSize + h.length) break;
            at += kHeaderSize + h.length;
        }
        if (at == 0) return pos; // incomplete although the buffer could hold it: torn
        pos += at;
    }
    return pos;
}

} // namespace

std::vector<Segment> listSegments(const std::string &dir) {
    std::vector<Segment> segs;
    for (uint64_t start : listStarts(dir)) {
        Segment s;
        s.start = start;
        s.path = dir + "/" + segmentName(start);
        struct stat st;
        if (::stat(s.path.c_str(), &st) != 0) {
            if (errno == ENOENT) continue; // removed by the retention meanwhile
            throw sysError("log segment " + quote(s.path), errno);
        }
        s.size = uint64_t(st.st_size);
        s.mtime = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
        segs.push_back(std::move(s));
    }
    return segs;
}

uint64_t Retention::effectiveSegmentSize() const {
    if (segmentSize) return segmentSize;
    if (maxSize == 0) return kMaxSegment;
    return std::clamp(maxSize / 8, kMinSegment, kMaxSegment);
}

// ---- JournalWriter ----

JournalWriter::JournalWriter(std::string dir, Retention retention,
                             std::chrono::milliseconds lockTimeout,
                             std::chrono::milliseconds retryFor)
    : _dir(std::move(dir)), _retention(retention), _retryFor(retryFor) {
    try {
        mkdirs(_dir);
        std::string lockPath = _dir + "/writer.lock";
        _lockFd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (_lockFd < 0) throw sysError("open " + quote(lockPath), errno);
        auto deadline = std::chrono::steady_clock::now() + lockTimeout;
        std::minstd_rand jitter{static_cast<uint32_t>(::getpid())};
        while (::flock(_lockFd, LOCK_EX | LOCK_NB) != 0) {
            if (errno == EINTR) continue;
            if (errno != EWOULDBLOCK) throw sysError("lock " + quote(lockPath), errno);
            auto now = std::chrono::steady_clock::now();
            if (now >= deadline) {
                std::string msg = "the log of " + quote(baseName(_dir).substr(0, 12)) +
                                  " is held by another writer";
                char pid[32] = {};
                if (::pread(_lockFd, pid, sizeof pid - 1, 0) > 0 && pid[0])
                    msg += " (pid " + std::string(pid) + ")";
                throw Error(MO_E_BUSY, msg);
            }
            auto wait = std::chrono::milliseconds(10 + jitter() % 41);
            std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(wait, deadline - now));
        }
        // The holder's pid, for the message a waiting writer gives up with.
        std::string pid = std::to_string(::getpid());
        if (::ftruncate(_lockFd, 0) == 0) (void)!::pwrite(_lockFd, pid.data(), pid.size(), 0);

        std::vector<Segment> segs = listSegments(_dir);
        if (segs.empty()) {
            openSegment(0);
        } else {
            const Segment &last = segs.back();
            int fd = ::open(last.path.c_str(), O_RDWR | O_CLOEXEC);
            if (fd < 0) throw sysError("open " + quote(last.path), errno);
            uint64_t valid;
            try {
                valid = validPrefix(fd, last.size, last.path);
                if (valid < last.size && ::ftruncate(fd, off_t(valid)) != 0)
                    throw sysError("truncate the torn tail of " + quote(last.path), errno);
            } catch (...) {
                ::close(fd);
                throw;
            }
            ::close(fd);
            if (valid < _retention.effectiveSegmentSize())
                openSegment(last.start);
            else
                openSegment(last.start + valid);
        }
        rotateAndRetain();
        add(RecordType::start, 0, nowNs(), "{\"pid\":" + pid + "}");
        commit();
    } catch (...) {
        if (_fd >= 0) ::close(_fd);
        if (_lockFd >= 0) ::close(_lockFd);
        throw;
    }
}

JournalWriter::~JournalWriter() {
    if (!_finished) {
        try {
            commit();
        } catch (...) {
        }
    }
    if (_fd >= 0) ::close(_fd);
    if (_lockFd >= 0) ::close(_lockFd);
}

void JournalWriter::openSegment(uint64_t start) {
    std::string path = _dir + "/" + segmentName(start);
    // O_APPEND: after a failed write is cut back with ftruncate the next one lands at the end.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) throw sysError("open " + quote(path), errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw sysError("stat " + quote(path), err);
    }
    if (_fd >= 0) ::close(_fd);
    _fd = fd;
    _segStart = start;
    _segPath = std::move(path);
    _end = start + uint64_t(st.st_size);
}

void JournalWriter::add(RecordType type, uint8_t flags, int64_t time, std::string_view data) {
    if (_finished) throw Error(MO_E_STATE, "the log of " + quote(_dir) + " is finished");
    if (data.size() > kMaxRecordData)
        throw Error(MO_E_INTERNAL, "log record of " + std::to_string(data.size()) +
                                       " bytes: the limit is " + std::to_string(kMaxRecordData));
    Header h{uint32_t(data.size()), uint8_t(type), flags, kRecordMagic, time};
    size_t at = _pending.size();
    _pending.resize(at + kHeaderSize + data.size());
    std::memcpy(_pending.data() + at, &h, kHeaderSize);
    if (!data.empty()) std::memcpy(_pending.data() + at + kHeaderSize, data.data(), data.size());
}

uint64_t JournalWriter::commit() {
    if (_pending.empty()) return _end;
    // A batch is cut at record boundaries where the segment fills (a 64 KiB read of short
    // lines makes ~200 KiB of records): segments stay near their size, so retention
    // removes one small segment at a time and keeps close to maxSize.
    const uint64_t segment = _retention.effectiveSegmentSize();
    size_t from = 0;
    while (from < _pending.size()) {
        uint64_t used = _end - _segStart;
        uint64_t room = used < segment ? segment - used : 0;
        size_t to = from;
        while (to < _pending.size()) {
            uint32_t len;
            std::memcpy(&len, _pending.data() + to, sizeof len);
            size_t record = kHeaderSize + len;
            if (to > from && (to - from) + record > room) break;
            to += record;
        }
        writeAll(_pending.data() + from, to - from);
        _end += to - from;
        from = to;
        // Segments are contiguous, so the bytes kept are _end - _oldest: the size limit
        // holds after every write, not only at rotations.
        bool full = _end - _segStart >= segment;
        bool over = _retention.maxSize && _end - _oldest > _retention.maxSize;
        if (full || over) rotateAndRetain();
    }
    _pending.clear();
    return _end;
}

void JournalWriter::writeAll(const char *data, size_t len) {
    using namespace std::chrono;
    auto started = steady_clock::now();
    milliseconds delay(10);
    size_t done = 0;
    while (done < len) {
        ssize_t n = ::write(_fd, data + done, len - done);
        if (n > 0) {
            done += size_t(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        int err = n < 0 ? errno : ENOSPC;
        auto waited = steady_clock::now() - started;
        if (waited >= _retryFor) {
            // A torn record in the middle of a segment would read as corruption: cut the
            // part that was written, so the next commit starts on a record boundary.
            // Failing that, append nothing more: the next writer's repair cuts it.
            if (done && ::ftruncate(_fd, off_t(_end - _segStart)) != 0) _finished = true;
            _pending.clear();
            throw sysError("write " + quote(_segPath), err);
        }
        std::this_thread::sleep_for(std::min<nanoseconds>(delay, _retryFor - waited));
        delay = std::min(delay * 2, milliseconds(1000));
    }
}

void JournalWriter::rotateAndRetain() {
    if (_end - _segStart >= _retention.effectiveSegmentSize()) {
        // Opening the next segment can fail like any open (EMFILE, ENOSPC); the records
        // are written already, so keep appending to this one and try again next commit.
        try {
            openSegment(_end);
        } catch (const Error &) {
        }
    }
    if (_retention.maxSize == 0 && _retention.maxAge == 0) return;
    std::vector<Segment> segs;
    try {
        segs = listSegments(_dir);
    } catch (const Error &) {
        return;
    }
    // Failures to remove are left for the next rotation to retry: the records are already
    // written and the caller must not see this commit fail.
    uint64_t total = 0;
    for (const Segment &s : segs) total += s.size;
    int64_t oldest = _retention.maxAge ? nowNs() - _retention.maxAge : INT64_MIN;
    _oldest = segs.empty() ? _segStart : segs.front().start;
    bool kept = false;
    for (const Segment &s : segs) {
        if (s.start == _segStart) break;
        bool tooBig = _retention.maxSize && total > _retention.maxSize;
        if (!tooBig && s.mtime >= oldest) {
            if (!kept) _oldest = s.start;
            kept = true;
            continue;
        }
        if (::unlink(s.path.c_str()) == 0 || errno == ENOENT) {
            total -= s.size;
            if (!kept) _oldest = s.start + s.size;
        } else if (!kept) {
            _oldest = s.start;
            kept = true;
        }
    }
}

void JournalWriter::finish(std::string_view endData) {
    if (_finished) return;
    commit();
    add(RecordType::end, 0, nowNs(), endData);
    commit();
    _finished = true;
    // No fsync: the page cache outlives a crash of this process, which is what the journal
    // guards against; a machine crash may lose the last seconds, as with any log.
    ::close(_fd);
    _fd = -1;
    ::close(_lockFd); // releases the flock
    _lockFd = -1;
}

// ---- JournalReader ----

JournalReader::JournalReader(std::string dir) : _dir(std::move(dir)) {}

JournalReader::~JournalReader() {
    if (_fd >= 0) ::close(_fd);
    if (_atFd >= 0) ::close(_atFd);
}

uint64_t JournalReader::takeGap() {
    uint64_t g = _gap;
    _gap = 0;
    return g;
}

uint64_t JournalReader::end() const {
    std::vector<Segment> segs = listSegments(_dir);
    return segs.empty() ? 0 : segs.back().start + segs.back().size;
}

bool JournalReader::writerActive() const {
    std::string path = _dir + "/writer.lock";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool held = false;
    while (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        held = errno == EWOULDBLOCK;
        break;
    }
    ::close(fd); // also drops a shared lock we took
    return held;
}

void JournalReader::closeSegment() {
    if (_fd >= 0) ::close(_fd);
    _fd = -1;
    _bufLen = 0;
    _bufAt = _pos;
}

bool JournalReader::openSegmentAt(uint64_t offset) {
    // A segment can vanish between the listing and the open (retention): list again.
    for (int attempt = 0; attempt < 100; ++attempt) {
        closeSegment();
        std::vector<Segment> segs = listSegments(_dir);
        if (segs.empty()) {
            _pos = offset;
            _bufAt = offset;
            return false;
        }
        const Segment *pick = nullptr;
        uint64_t pos = offset;
        for (const Segment &s : segs) {
            if (pos < s.start) {
                pick = &s;
                break;
            }
            if (pos < s.start + s.size) {
                pick = &s;
                break;
            }
        }
        if (!pick) {
            pick = &segs.back();
            pos = std::min(pos, pick->start + pick->size);
        }
        int fd = ::open(pick->path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) continue;
            throw sysError("open " + quote(pick->path), errno);
        }
        if (pos < pick->start) {
            _gap += pick->start - pos;
            pos = pick->start;
        }
        _fd = fd;
        _seg = *pick;
        _pos = pos;
        _bufAt = pos;
        _bufLen = 0;
        return true;
    }
    throw Error(MO_E_INTERNAL, "log " + quote(_dir) + ": segments keep vanishing");
}

uint64_t JournalReader::seek(uint64_t offset) {
    // Within the open segment (the index steps back after joining a long line, and seeks
    // at every batch): no listing, no reopening, and the buffer stays when it covers it.
    if (_fd >= 0 && offset >= _seg.start && offset != 0) {
        bool buffered = offset >= _bufAt && offset <= _bufAt + _bufLen;
        struct stat st;
        if (buffered && offset <= _pos) {
            _pos = offset;
            return _pos;
        }
        if (::fstat(_fd, &st) == 0 && st.st_nlink > 0 &&
            offset <= _seg.start + uint64_t(st.st_size)) {
            _pos = offset;
            if (!buffered) {
                _bufAt = offset;
                _bufLen = 0;
            }
            return _pos;
        }
    }
    openSegmentAt(offset);
    return _pos;
}

// Makes [_pos, _pos + need) available in the buffer; false when the segment has fewer
// bytes there now.
bool JournalReader::fill(size_t need) {
    if (_pos < _bufAt || _pos > _bufAt + _bufLen) {
        _bufAt = _pos;
        _bufLen = 0;
    }
    size_t have = size_t(_bufAt + _bufLen - _pos);
    if (have >= need) return true;
    size_t skip = size_t(_pos - _bufAt);
    if (skip) {
        std::memmove(_buf.data(), _buf.data() + skip, have);
        _bufAt = _pos;
        _bufLen = have;
    }
    if (_buf.size() < std::max(need, kReadAhead)) _buf.resize(std::max(need, kReadAhead));
    while (_bufLen < need) {
        ssize_t n = ::pread(_fd, _buf.data() + _bufLen, _buf.size() - _bufLen,
                            off_t(_bufAt + _bufLen - _seg.start));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("read " + quote(_seg.path), errno);
        if (n == 0) return false;
        _bufLen += size_t(n);
    }
    return true;
}

// A bad header followed only by NUL bytes is the tail a machine crash leaves (the size
// was extended, the data never reached the disk): the end, not corruption.
bool JournalReader::zeroTail(uint64_t offset) {
    char block[65536];
    uint64_t at = offset - _seg.start;
    for (;;) {
        ssize_t n = ::pread(_fd, block, sizeof block, off_t(at));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("read " + quote(_seg.path), errno);
        if (n == 0) return true;
        for (ssize_t i = 0; i < n; ++i)
            if (block[i]) return false;
        at += uint64_t(n);
    }
}

// At the end of the current segment's bytes: move to the next segment when this one is
// finished. False when it is not (the writer is still appending to it) or there is none.
bool JournalReader::advance() {
    // The writer names the next segment after this one's final size and never appends
    // here once it exists, so seeing it means everything before _pos has been read.
    // An empty segment has no successor: the writer rotates only after writing.
    std::string next = _pos > _seg.start ? _dir + "/" + segmentName(_pos) : std::string();
    int fd = next.empty() ? -1 : ::open(next.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ::close(_fd);
        _fd = fd;
        _seg = Segment{_pos, 0, 0, std::move(next)};
        _bufAt = _pos;
        _bufLen = 0;
        return true;
    }
    if (!next.empty() && errno != ENOENT) throw sysError("open " + quote(next), errno);
    // No successor: either the writer is still on this segment, or the retention removed
    // this one (and maybe its successors) while it was read; then skip to what is left.
    struct stat st;
    if (::fstat(_fd, &st) != 0) throw sysError("stat " + quote(_seg.path), errno);
    if (st.st_nlink > 0) return false;
    if (fill(1)) return true; // appended before it went
    for (uint64_t start : listStarts(_dir)) {
        if (start < _pos) continue;
        uint64_t from = _pos;
        openSegmentAt(start);
        _gap += _pos - from;
        return _fd >= 0;
    }
    return false;
}

// A record still being written, or a torn one a new writer is about to cut away and
// write over: forget its bytes so the next call reads them afresh.
std::optional<Record> JournalReader::notYet() {
    _bufLen = size_t(_pos - _bufAt);
    return std::nullopt;
}

std::optional<Record> JournalReader::next() {
    for (;;) {
        if (_fd < 0 && !openSegmentAt(_pos)) return std::nullopt;
        if (fill(kHeaderSize)) {
            Header h = readHeader(_buf.data() + (_pos - _bufAt));
            if (!validHeader(h)) {
                if (zeroTail(_pos)) return notYet();
                throw Error(MO_E_INTERNAL, "log segment " + quote(_seg.path) +
                                               ": bad record at offset " +
                                               std::to_string(_pos - _seg.start));
            }
            if (!fill(kHeaderSize + h.length)) return notYet();
            Record r;
            r.offset = _pos;
            r.type = RecordType(h.type);
            r.flags = h.flags;
            r.time = h.time;
            r.data = std::string_view(_buf.data() + (_pos - _bufAt) + kHeaderSize, h.length);
            _pos += kHeaderSize + h.length;
            return r;
        }
        if (_bufAt + _bufLen > _pos) return notYet();
        if (!advance()) return std::nullopt;
    }
}

std::optional<Record> JournalReader::at(uint64_t offset) {
    // The segment of the last hit stays open: hits tend to come in order. One that was
    // the newest when opened may have been followed by others since: on a miss there,
    // look again.
    for (int attempt = 0; attempt < 2; ++attempt) {
        bool fresh = false;
        if (_atFd < 0 || offset < _atStart || offset >= _atLimit) {
            std::vector<uint64_t> starts = listStarts(_dir);
            auto it = std::upper_bound(starts.begin(), starts.end(), offset);
            if (it == starts.begin()) return std::nullopt;
            uint64_t start = *std::prev(it);
            std::string path = _dir + "/" + segmentName(start);
            int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                if (errno == ENOENT) return std::nullopt;
                throw sysError("open " + quote(path), errno);
            }
            if (_atFd >= 0) ::close(_atFd);
            _atFd = fd;
            _atStart = start;
            _atLimit = it == starts.end() ? UINT64_MAX : *it;
            _atPath = std::move(path);
            fresh = true;
        }
        if (auto r = readAt(offset)) return r;
        if (fresh || _atLimit != UINT64_MAX) return std::nullopt;
        _atLimit = 0; // list again
    }
    return std::nullopt;
}

std::optional<Record> JournalReader::readAt(uint64_t offset) {
    auto read = [&](size_t into, size_t len, uint64_t where) -> size_t {
        size_t got = 0;
        while (got < len) {
            ssize_t n = ::pread(_atFd, _atBuf.data() + into + got, len - got,
                                off_t(where - _atStart + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw sysError("read " + quote(_atPath), errno);
            if (n == 0) break;
            got += size_t(n);
        }
        return got;
    };
    // Most lines are short: the header and the data in one read.
    constexpr size_t kFirst = 4096;
    if (_atBuf.size() < kFirst) _atBuf.resize(kFirst);
    size_t got = read(0, kFirst, offset);
    if (got < kHeaderSize) return std::nullopt;
    Header h = readHeader(_atBuf.data());
    if (!validHeader(h)) return std::nullopt;
    size_t total = kHeaderSize + h.length;
    if (got < total) {
        if (_atBuf.size() < total) _atBuf.resize(total);
        if (read(got, total - got, offset + got) < total - got) return std::nullopt;
    }
    Record r;
    r.offset = offset;
    r.type = RecordType(h.type);
    r.flags = h.flags;
    r.time = h.time;
    r.data = std::string_view(_atBuf.data() + kHeaderSize, h.length);
    return r;
}

} // namespace mobileops::logcollector
