#include "Query.h"

#include <mobileops/common/Errors.h>

#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <ctime>
#include <optional>

namespace mobileops::logcollector {

using common::Error;
using common::quote;
using common::sysError;
using nlohmann::json;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kMaxSeconds = INT64_MAX / kSecond; // 2262-04-11
constexpr int64_t kMinSeconds = INT64_MIN / kSecond; // 1677-09-21
constexpr size_t kOutputBuffer = 64 * 1024;
// A line split in partial records is joined in memory up to this size; past it the pieces
// go out as they come, so a container writing without newlines cannot exhaust memory.
constexpr size_t kMaxJoined = 4u << 20;

const char *const kTimeForms =
    "expected an RFC 3339 time (2026-11-23T05:12:33Z), a date (2026-11-23), Unix seconds "
    "(1795000000) or a duration before now (90s, 10m, 1h30m, 2d)";

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, any year).
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civilFromDays(int64_t z, int64_t &y, unsigned &m, unsigned &d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
}

unsigned daysInMonth(int64_t y, unsigned m) {
    static const unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

class TimeParser {
public:
    TimeParser(const std::string &text, const std::string &what) : _text(text), _what(what) {}

    Error fail(const std::string &reason) const {
        return Error(MO_E_INVALID, "invalid " + _what + " " + quote(_text) + ": " + reason);
    }

    int64_t parse(int64_t now) {
        if (_text.empty()) throw fail(kTimeForms);
        if (_text.size() >= 5 && std::all_of(_text.begin(), _text.begin() + 4, isDigit) &&
            _text[4] == '-')
            return rfc3339();
        if (_text[0] == '-' || _text[0] == '+') {
            bool duration = _text.size() > 1 && isDigit(_text[1]) && !isDigit(_text.back());
            throw fail(duration ? "a duration already counts back from now: write " +
                                      quote(_text.substr(1))
                                : std::string(kTimeForms));
        }
        if (!isDigit(_text[0])) throw fail(kTimeForms);
        size_t i = 0;
        while (i < _text.size() && isDigit(_text[i])) ++i;
        if (i == _text.size() || _text[i] == '.') return unixSeconds();
        return now - duration(now);
    }

private:
    // Exactly `n` digits at _pos.
    unsigned digits(size_t n, const char *field) {
        unsigned v = 0;
        for (size_t k = 0; k < n; ++k, ++_pos) {
            if (_pos >= _text.size() || !isDigit(_text[_pos]))
                throw fail(std::string("expected ") + std::to_string(n) + " digits for the " +
                           field + "; " + kRfc3339);
            v = v * 10 + static_cast<unsigned>(_text[_pos] - '0');
        }
        return v;
    }

    void expect(char c, const char *after) {
        if (_pos >= _text.size() || _text[_pos] != c)
            throw fail(std::string("expected ") + quote(std::string(1, c)) + " after the " + after +
                       "; " + kRfc3339);
        ++_pos;
    }

    // ns of `.ddd...` at _pos (digits past the ninth are accepted and dropped).
    int64_t fraction() {
        ++_pos;
        if (_pos >= _text.size() || !isDigit(_text[_pos]))
            throw fail("expected digits after the decimal point");
        int64_t ns = 0;
        size_t n = 0;
        for (; _pos < _text.size() && isDigit(_text[_pos]); ++_pos, ++n)
            if (n < 9) ns = ns * 10 + (_text[_pos] - '0');
        for (; n < 9; ++n) ns *= 10;
        return ns;
    }

    int64_t toNs(int64_t seconds, int64_t ns) const {
        if (seconds < kMinSeconds + 1 || seconds > kMaxSeconds - 1)
            throw fail("out of range (years 1678 to 2261)");
        return seconds * kSecond + ns;
    }

    int64_t rfc3339() {
        int64_t year = digits(4, "year");
        expect('-', "year");
        unsigned month = digits(2, "month");
        expect('-', "month");
        unsigned day = digits(2, "day");
        if (month < 1 || month > 12)
            throw fail("month " + quote(std::to_string(month)) + " is out of range (01 to 12)");
        if (day < 1 || day > daysInMonth(year, month))
            throw fail("day " + quote(std::to_string(day)) + " is out of range for " +
                       _text.substr(0, 7));
        int64_t seconds = daysFromCivil(year, month, day) * 86400;
        if (_pos == _text.size()) return toNs(seconds, 0);

        char sep = _text[_pos];
        if (sep != 'T' && sep != 't' && sep != ' ')
            throw fail(std::string("expected `T` after the date; ") + kRfc3339);
        ++_pos;
        unsigned hour = digits(2, "hour");
        expect(':', "hour");
        unsigned minute = digits(2, "minute");
        expect(':', "minute");
        unsigned second = digits(2, "second");
        if (hour > 23) throw fail("hour " + quote(std::to_string(hour)) + " is out of range");
        if (minute > 59) throw fail("minute " + quote(std::to_string(minute)) + " is out of range");
        // 60: a leap second, which the system clock never shows; it reads as the next second.
        if (second > 60) throw fail("second " + quote(std::to_string(second)) + " is out of range");
        int64_t ns = 0;
        if (_pos < _text.size() && _text[_pos] == '.') ns = fraction();
        if (_pos == _text.size())
            throw fail("missing the time zone: add `Z` for UTC or an offset such as `+01:00`");
        int64_t offset = 0;
        char zone = _text[_pos];
        if (zone == 'Z' || zone == 'z') {
            ++_pos;
        } else if (zone == '+' || zone == '-') {
            ++_pos;
            unsigned oh = digits(2, "offset hours");
            expect(':', "offset hours");
            unsigned om = digits(2, "offset minutes");
            if (oh > 23 || om > 59) throw fail("time zone offset is out of range");
            offset = static_cast<int64_t>(oh * 3600 + om * 60) * (zone == '-' ? -1 : 1);
        } else {
            throw fail("expected `Z` or an offset such as `+01:00` after the time; " +
                       std::string(kRfc3339));
        }
        if (_pos != _text.size())
            throw fail("unexpected " + quote(_text.substr(_pos)) + " after the time zone");
        seconds += hour * 3600 + minute * 60 + second - offset;
        return toNs(seconds, ns);
    }

    int64_t unixSeconds() {
        int64_t seconds = 0;
        for (; _pos < _text.size() && isDigit(_text[_pos]); ++_pos) {
            seconds = seconds * 10 + (_text[_pos] - '0');
            if (seconds > kMaxSeconds) throw fail("out of range (years 1678 to 2261)");
        }
        int64_t ns = 0;
        if (_pos < _text.size()) ns = fraction();
        if (_pos != _text.size()) throw fail(kTimeForms);
        return toNs(seconds, ns);
    }

    int64_t duration(int64_t now) {
        int64_t total = 0;
        while (_pos < _text.size()) {
            if (!isDigit(_text[_pos])) throw fail(kTimeForms);
            size_t start = _pos;
            int64_t n = 0;
            for (; _pos < _text.size() && isDigit(_text[_pos]); ++_pos) {
                n = n * 10 + (_text[_pos] - '0');
                if (n > kMaxSeconds * 1000) throw fail("duration is out of range");
            }
            size_t unitStart = _pos;
            while (_pos < _text.size() && !isDigit(_text[_pos]) && _text[_pos] != '.') ++_pos;
            std::string unit = _text.substr(unitStart, _pos - unitStart);
            int64_t scale;
            if (unit == "ms")
                scale = kSecond / 1000;
            else if (unit == "s")
                scale = kSecond;
            else if (unit == "m")
                scale = 60 * kSecond;
            else if (unit == "h")
                scale = 3600 * kSecond;
            else if (unit == "d")
                scale = 86400 * kSecond;
            else if (unit.empty())
                throw fail(_pos < _text.size()
                               ? std::string(kTimeForms)
                               : "missing the unit after " + quote(_text.substr(start)) +
                                     " (a duration takes ms, s, m, h or d, as in 1h30m)");
            else
                throw fail("unknown unit " + quote(unit) +
                           " (a duration takes ms, s, m, h or d, as in 1h30m)");
            if (n > (INT64_MAX - total) / scale) throw fail("duration is out of range");
            total += n * scale;
        }
        if (total > now) throw fail("reaches back before 1970");
        return total;
    }

    static constexpr const char *kRfc3339 =
        "expected an RFC 3339 time such as 2026-11-23T05:12:33Z or 2026-11-23T06:12:33.5+01:00, "
        "or a date such as 2026-11-23";

    const std::string &_text;
    const std::string &_what;
    size_t _pos = 0;
};

// The length of the well-formed UTF-8 sequence at p, or minus the length of the maximal
// ill-formed subpart there (what one U+FFFD replaces, as Unicode recommends).
int utf8Sequence(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c == 0xE0)
        len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        len = 3;
    else if (c == 0xED)
        len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF)
        len = 3;
    else if (c == 0xF0)
        len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        len = 4;
    else if (c == 0xF4)
        len = 4, hi = 0x8F;
    else
        return -1;
    for (int k = 1; k < len; ++k) {
        if (static_cast<size_t>(k) >= n) return -k;
        unsigned b = p[k];
        if (b < lo || b > hi) return -k;
        lo = 0x80, hi = 0xBF;
    }
    return len;
}

std::string replaceInvalid(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    auto *p = reinterpret_cast<const unsigned char *>(s.data());
    size_t i = 0;
    while (i < s.size()) {
        int len = utf8Sequence(p + i, s.size() - i);
        if (len > 0) {
            out.append(s.data() + i, static_cast<size_t>(len));
            i += static_cast<size_t>(len);
        } else {
            out.append("\xEF\xBF\xBD");
            i += static_cast<size_t>(-len);
        }
    }
    return out;
}

const char kHex[] = "0123456789abcdef";

// A JSON string as nlohmann::json::dump() writes it (ensure_ascii off: UTF-8 as is).
// `s` must be valid UTF-8.
void appendJsonString(std::string &out, std::string_view s) {
    out.push_back('"');
    size_t run = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            out.append("\\\"");
            break;
        case '\\':
            out.append("\\\\");
            break;
        case '\b':
            out.append("\\b");
            break;
        case '\f':
            out.append("\\f");
            break;
        case '\n':
            out.append("\\n");
            break;
        case '\r':
            out.append("\\r");
            break;
        case '\t':
            out.append("\\t");
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
            out.append(u, sizeof u);
        }
        }
    }
    out.append(s.data() + run, s.size() - run);
    out.push_back('"');
}

void appendJsonText(std::string &out, std::string_view s) {
    if (validUtf8(s))
        appendJsonString(out, s);
    else
        appendJsonString(out, replaceInvalid(s));
}

const char *streamName(RecordType type) { return type == RecordType::err ? "stderr" : "stdout"; }

bool sameFile(int a, int b) {
    struct stat sa, sb;
    if (::fstat(a, &sa) < 0 || ::fstat(b, &sb) < 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Buffered output to one descriptor. A reader that went away (EPIPE) ends the output
// quietly: `broken` is set and everything after is dropped.
class Writer {
public:
    explicit Writer(int fd) : _fd(fd) { _buf.reserve(kOutputBuffer); }
    Writer(const Writer &) = delete;
    Writer &operator=(const Writer &) = delete;

    bool broken() const { return _broken; }
    // For callers that format in place; they call filled() afterwards.
    std::string &buffer() { return _buf; }
    void filled() {
        if (_buf.size() >= kOutputBuffer) flush();
    }

    void append(const char *p, size_t n) {
        if (_buf.size() + n > kOutputBuffer) {
            flush();
            if (n >= kOutputBuffer) return writeAll(p, n);
        }
        _buf.append(p, n);
    }
    void append(std::string_view s) { append(s.data(), s.size()); }

    void flush() {
        if (_buf.empty()) return;
        writeAll(_buf.data(), _buf.size());
        _buf.clear();
    }

private:
    void writeAll(const char *p, size_t n) {
        while (n > 0 && !_broken) {
            ssize_t w = ::write(_fd, p, n);
            if (w >= 0) {
                p += w;
                n -= static_cast<size_t>(w);
            } else if (errno == EAGAIN) {
                // A descriptor someone made non-blocking (a shared terminal): wait for room.
                pollfd pfd{_fd, POLLOUT, 0};
                ::poll(&pfd, 1, -1);
            } else if (errno == EPIPE) {
                _broken = true;
            } else if (errno != EINTR) {
                throw sysError("write the output", errno);
            }
        }
    }

    int _fd;
    bool _broken = false;
    std::string _buf;
};

// The last N offsets pushed.
class Ring {
public:
    explicit Ring(uint64_t capacity) : _capacity(capacity) {}
    void push(uint64_t offset) {
        if (_capacity == 0) return;
        if (_items.size() < _capacity) return _items.push_back(offset);
        _items[_head] = offset;
        _head = (_head + 1) % _items.size();
    }
    std::vector<uint64_t> ordered() const {
        std::vector<uint64_t> out(_items.begin() + static_cast<ptrdiff_t>(_head), _items.end());
        out.insert(out.end(), _items.begin(), _items.begin() + static_cast<ptrdiff_t>(_head));
        return out;
    }

private:
    uint64_t _capacity;
    std::vector<uint64_t> _items;
    size_t _head = 0;
};

// Turns records into output lines: joins partial records with their continuation in
// the same stream, applies the stream and time filters to whole lines (by the time of
// their first piece) and formats them.
class Printer {
public:
    Printer(const ShowOptions &options, Writer &out, Writer &err)
        : _o(options), _out(out), _err(err) {}

    uint64_t lines() const { return _lines; }
    bool broken() const { return _out.broken() || _err.broken(); }

    // Counting mode (the first pass of --tail): line starts that pass the filters go to
    // `ring` instead of the output.
    void count(Ring *ring) { _ring = ring; }
    // Lines that start before `before` print only when their offset is in `offsets`
    // (sorted): the second pass of --tail.
    void only(std::vector<uint64_t> offsets, uint64_t before) {
        _only = std::move(offsets);
        _before = before;
    }
    // Muted: nothing prints, but a line still open when muting ends prints whole once
    // it completes (--follow from the end).
    void mute(bool on) { _muted = on; }
    void reset() {
        for (auto &o : _open) o.open = false;
    }

    void add(const Record &r) {
        if (!r.isLine()) {
            // A run started or ended: its open lines will never continue.
            endRun();
            return;
        }
        const int s = static_cast<int>(r.type);
        if (_o.stream != 0 && s != _o.stream) return;
        Open &o = _open[s];
        if (!o.open) {
            bool take = inRange(r.time) && selected(r.offset);
            if (take && _ring) {
                _ring->push(r.offset);
                take = false;
            }
            if (!r.partial()) {
                if (take && !_muted) line(r.type, r.offset, r.time, r.data, 0);
                return;
            }
            o.open = true;
            o.take = take || (_muted && !_ring);
            o.spilled = false;
            o.offset = r.offset;
            o.time = r.time;
            o.data.clear();
            if (o.take) piece(o, r);
            return;
        }
        if (o.take) piece(o, r);
        if (!r.partial()) {
            if (o.take) finish(o, r.type, 0);
            o.open = false;
        }
    }

    // Open lines print as they are (their continuation will not come).
    void endRun() {
        for (int s = 1; s <= 2; ++s) {
            Open &o = _open[s];
            if (o.open && o.take) finish(o, static_cast<RecordType>(s), kPartial);
            o.open = false;
        }
    }

    void warn(const std::string &message, Writer *to) {
        if (!to) return;
        to->append(message);
        to->append("\n", 1);
    }

private:
    struct Open {
        bool open = false, take = false, spilled = false;
        uint64_t offset = 0;
        int64_t time = 0;
        std::string data;
    };

    bool inRange(int64_t time) const {
        return (_o.since == 0 || time >= _o.since) && (_o.until == 0 || time <= _o.until);
    }
    bool selected(uint64_t offset) const {
        return offset >= _before || std::binary_search(_only.begin(), _only.end(), offset);
    }

    void line(RecordType type, uint64_t offset, int64_t time, std::string_view data,
              uint8_t flags) {
        if (_o.json) {
            Record rec;
            rec.offset = offset;
            rec.type = type;
            rec.flags = flags;
            rec.time = time;
            rec.data = data;
            appendLineJson(_out.buffer(), rec, _o.containerId, _o.name);
            _out.buffer().push_back('\n');
            _out.filled();
        } else {
            Writer &w = type == RecordType::err ? _err : _out;
            if (_o.timestamps) prefix(w, time);
            w.append(data);
            w.append("\n", 1);
        }
        ++_lines;
    }

    void prefix(Writer &w, int64_t time) {
        char t[kTimeLength + 1];
        formatTimeTo(time, t);
        t[kTimeLength] = ' ';
        w.append(t, sizeof t);
    }

    void piece(Open &o, const Record &r) {
        if (o.data.empty() && o.spilled && _o.json) {
            // After a spill the next JSON object starts at this piece.
            o.offset = r.offset;
            o.time = r.time;
        }
        o.data.append(r.data);
        if (o.data.size() <= kMaxJoined) return;
        if (_muted) {
            // Too long to hold for the attach: it starts before the output does anyway.
            o.take = false;
            o.data.clear();
            return;
        }
        if (_o.json) {
            line(r.type, o.offset, o.time, o.data, kPartial);
            --_lines; // the line is counted once, when it ends
        } else {
            Writer &w = r.type == RecordType::err ? _err : _out;
            if (!o.spilled && _o.timestamps) prefix(w, o.time);
            w.append(o.data);
        }
        o.spilled = true;
        o.data.clear();
    }

    void finish(Open &o, RecordType type, uint8_t flags) {
        if (_muted) return;
        if (o.spilled && !_o.json) {
            Writer &w = type == RecordType::err ? _err : _out;
            w.append(o.data);
            w.append("\n", 1);
            ++_lines;
        } else {
            line(type, o.offset, o.time, o.data, flags);
        }
        o.data.clear();
    }

    const ShowOptions &_o;
    Writer &_out, &_err;
    Open _open[3];
    Ring *_ring = nullptr;
    std::vector<uint64_t> _only;
    uint64_t _before = 0;
    bool _muted = false;
    uint64_t _lines = 0;
};

// Where a reader at the end of the journal now is: the last record boundary, found by
// reading the last segment through (the one before when the writer has just rotated, so
// a line in progress is seen from its start).
uint64_t seekEnd(JournalReader &reader, Printer *printer) {
    auto segments = listSegments(reader.dir());
    size_t last = segments.size() - (segments.size() >= 2 && segments.back().size == 0 ? 2 : 1);
    reader.seek(segments.empty() ? 0 : segments[last].start);
    while (auto r = reader.next())
        if (printer) printer->add(*r);
    reader.takeGap();
    return reader.position();
}

} // namespace

int64_t nowNs() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * kSecond + ts.tv_nsec;
}

int64_t parseTime(const std::string &text, const std::string &what, int64_t now) {
    return TimeParser(text, what).parse(now);
}

void formatTimeTo(int64_t ns, char *out) {
    int64_t seconds = ns / kSecond, frac = ns % kSecond;
    if (frac < 0) frac += kSecond, --seconds;
    int64_t days = seconds / 86400, rest = seconds % 86400;
    if (rest < 0) rest += 86400, --days;
    int64_t year;
    unsigned month, day;
    civilFromDays(days, year, month, day);
    auto two = [](char *p, unsigned v) {
        p[0] = static_cast<char>('0' + v / 10);
        p[1] = static_cast<char>('0' + v % 10);
    };
    auto y = static_cast<unsigned>(year); // 1677..2262 for an int64 ns
    two(out, y / 100);
    two(out + 2, y % 100);
    out[4] = '-';
    two(out + 5, month);
    out[7] = '-';
    two(out + 8, day);
    out[10] = 'T';
    auto r = static_cast<unsigned>(rest);
    two(out + 11, r / 3600);
    out[13] = ':';
    two(out + 14, r / 60 % 60);
    out[16] = ':';
    two(out + 17, r % 60);
    out[19] = '.';
    auto f = static_cast<uint64_t>(frac);
    for (int k = 28; k >= 20; --k, f /= 10) out[k] = static_cast<char>('0' + f % 10);
    out[29] = 'Z';
}

std::string formatTime(int64_t ns) {
    char buf[kTimeLength];
    formatTimeTo(ns, buf);
    return std::string(buf, kTimeLength);
}

bool validUtf8(std::string_view s) {
    auto *p = reinterpret_cast<const unsigned char *>(s.data());
    size_t n = s.size(), i = 0;
    while (i < n) {
        // Eight ASCII bytes at a time: the common case for log lines.
        if (i + 8 <= n) {
            uint64_t w;
            std::memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ull) == 0) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        int len = utf8Sequence(p + i, n - i);
        if (len < 0) return false;
        i += static_cast<size_t>(len);
    }
    return true;
}

std::string base64(std::string_view bytes) {
    static const char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    auto *p = reinterpret_cast<const unsigned char *>(bytes.data());
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t v = (uint32_t(p[i]) << 16) | (uint32_t(p[i + 1]) << 8) | p[i + 2];
        out.push_back(table[v >> 18]);
        out.push_back(table[(v >> 12) & 63]);
        out.push_back(table[(v >> 6) & 63]);
        out.push_back(table[v & 63]);
    }
    if (size_t rest = bytes.size() - i) {
        uint32_t v = uint32_t(p[i]) << 16;
        if (rest == 2) v |= uint32_t(p[i + 1]) << 8;
        out.push_back(table[v >> 18]);
        out.push_back(table[(v >> 12) & 63]);
        out.push_back(rest == 2 ? table[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

json lineJson(const Record &record, const std::string &containerId, const std::string &name) {
    auto text = [](std::string_view s) {
        return validUtf8(s) ? std::string(s) : replaceInvalid(s);
    };
    json j = {{"time", formatTime(record.time)},
              {"container", text(containerId)},
              {"name", text(name)},
              {"stream", streamName(record.type)},
              {"offset", record.offset}};
    if (validUtf8(record.data)) {
        j["line"] = std::string(record.data);
    } else {
        j["line"] = replaceInvalid(record.data);
        j["data"] = base64(record.data);
    }
    if (record.partial()) j["partial"] = true;
    return j;
}

// Keys in nlohmann's (sorted) order, so the bytes equal lineJson(...).dump().
void appendLineJson(std::string &out, const Record &record, std::string_view containerId,
                    std::string_view name) {
    const bool valid = validUtf8(record.data);
    out.append("{\"container\":");
    appendJsonText(out, containerId);
    if (!valid) {
        out.append(",\"data\":\"");
        out.append(base64(record.data));
        out.push_back('"');
    }
    out.append(",\"line\":");
    if (valid)
        appendJsonString(out, record.data);
    else
        appendJsonString(out, replaceInvalid(record.data));
    out.append(",\"name\":");
    appendJsonText(out, name);
    out.append(",\"offset\":");
    char num[24];
    auto end = std::to_chars(num, num + sizeof num, record.offset).ptr;
    out.append(num, static_cast<size_t>(end - num));
    if (record.partial()) out.append(",\"partial\":true");
    out.append(",\"stream\":\"");
    out.append(streamName(record.type));
    out.append("\",\"time\":\"");
    char t[kTimeLength];
    formatTimeTo(record.time, t);
    out.append(t, kTimeLength);
    out.append("\"}");
}

uint64_t show(const std::string &dir, const ShowOptions &options, int outFd, int errFd) {
    JournalReader reader(dir);
    Writer out(outFd);
    // stderr lines get their own buffer only when they go elsewhere: on one terminal or
    // pipe (2>&1) one buffer keeps the two streams in the order they were written.
    std::optional<Writer> errOwn;
    if (errFd >= 0 && !sameFile(outFd, errFd)) errOwn.emplace(errFd);
    Writer &err = errOwn && !options.json ? *errOwn : out;
    Writer *warnTo = errOwn ? &*errOwn : (errFd >= 0 || !options.json ? &out : nullptr);
    Printer printer(options, out, err);

    auto flushAll = [&] {
        out.flush();
        if (errOwn) errOwn->flush();
    };
    auto checkGap = [&] {
        if (uint64_t gap = reader.takeGap()) {
            printer.endRun();
            printer.warn("mobileops: " + std::to_string(gap) +
                             " bytes of older output were rotated away before they could be read",
                         warnTo);
        }
    };
    // Copies records up to the end of the journal (or `limit`); whether there were any.
    auto drain = [&](uint64_t limit) {
        bool any = false;
        while (auto r = reader.next()) {
            if (r->offset >= limit) break;
            any = true;
            checkGap();
            printer.add(*r);
            if (printer.broken()) break;
        }
        checkGap();
        return any;
    };

    uint64_t limit = UINT64_MAX;
    if (options.fromEnd) {
        printer.mute(true);
        seekEnd(reader, &printer);
        printer.mute(false);
    } else if (options.tail >= 0) {
        reader.seek(0);
        reader.takeGap();
        Ring ring(static_cast<uint64_t>(options.tail));
        printer.count(&ring);
        while (auto r = reader.next()) printer.add(*r);
        reader.takeGap();
        printer.count(nullptr);
        const uint64_t end = reader.position();
        std::vector<uint64_t> offsets = ring.ordered();
        if (!offsets.empty()) {
            printer.reset();
            reader.seek(offsets.front());
            checkGap();
            printer.only(std::move(offsets), end);
        }
        if (!options.follow) limit = end;
    } else {
        reader.seek(0);
        reader.takeGap();
    }

    drain(limit);
    while (options.follow && !printer.broken()) {
        if (drain(UINT64_MAX)) continue;
        if (!reader.writerActive()) {
            // The writer commits everything before it lets go of the lock.
            drain(UINT64_MAX);
            break;
        }
        if (options.until != 0 && nowNs() > options.until) break;
        flushAll();
        ::poll(nullptr, 0, std::max(options.pollMs, 1));
    }
    if (!printer.broken()) printer.endRun();
    flushAll();
    return printer.lines();
}

std::vector<json> readSince(const std::string &dir, const std::string &containerId,
                            const std::string &name, uint64_t &cursor, size_t limit) {
    JournalReader reader(dir);
    std::vector<json> lines;
    if (cursor == UINT64_MAX) {
        cursor = seekEnd(reader, nullptr);
        return lines;
    }
    reader.seek(cursor);
    reader.takeGap();
    while (lines.size() < limit) {
        auto r = reader.next();
        if (!r) break;
        if (r->isLine()) lines.push_back(lineJson(*r, containerId, name));
    }
    cursor = reader.position();
    return lines;
}

} // namespace mobileops::logcollector
