#include "Journal.h"
#include "Query.h"

#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace mobileops::logcollector;
using mobileops::common::Error;
using mobileops::test::TempDir;
using nlohmann::json;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kBase = 1'795'000'000 * kSecond; // 2026-11-18T...

// A descriptor in memory that show() writes to; read back with text().
class Capture {
public:
    Capture() : _fd(::memfd_create("show", MFD_CLOEXEC)) {}
    ~Capture() { ::close(_fd); }
    int fd() const { return _fd; }
    std::string text() const {
        std::string out;
        char buf[65536];
        ssize_t n;
        off_t at = 0;
        while ((n = ::pread(_fd, buf, sizeof buf, at)) > 0) {
            out.append(buf, size_t(n));
            at += n;
        }
        return out;
    }

private:
    int _fd;
};

struct Shown {
    std::string out, err;
    uint64_t lines = 0;
};

Shown showBoth(const std::string &dir, const ShowOptions &options) {
    Capture out, err;
    Shown s;
    s.lines = show(dir, options, out.fd(), err.fd());
    s.out = out.text();
    s.err = err.text();
    return s;
}

std::string showOne(const std::string &dir, const ShowOptions &options) {
    Capture out;
    show(dir, options, out.fd(), -1);
    return out.text();
}

std::vector<std::string> split(const std::string &text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

int64_t utc(int y, int mo, int d, int h, int mi, int s) {
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return int64_t(::timegm(&tm)) * kSecond;
}

std::string unbase64(const std::string &in) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        return c == '+' ? 62 : c == '/' ? 63 : -1;
    };
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        int v = value(c);
        if (v < 0) break;
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(char((acc >> bits) & 0xFF));
        }
    }
    return out;
}

Retention segments(uint64_t segmentSize, uint64_t maxSize = 0) {
    Retention r;
    r.maxSize = maxSize;
    r.segmentSize = segmentSize;
    return r;
}

// A journal of `n` lines "out i" / "err i" (every third line on stderr), one second apart.
void writeMixed(const std::string &dir, int n) {
    JournalWriter w(dir, Retention{});
    for (int i = 0; i < n; ++i) {
        bool err = i % 3 == 2;
        w.add(err ? RecordType::err : RecordType::out, 0, kBase + i * kSecond,
              (err ? "err " : "out ") + std::to_string(i));
    }
    w.finish();
}

void expectInvalid(const std::string &text) {
    try {
        parseTime(text, "--since", kBase);
        ADD_FAILURE() << "accepted " << text;
    } catch (const Error &e) {
        std::string m = e.what();
        EXPECT_EQ(e.code(), MO_E_INVALID) << m;
        EXPECT_EQ(m.rfind("invalid --since `" + text + "`: ", 0), 0u) << m;
        EXPECT_NE(m.back(), '.') << m;
        EXPECT_GT(m.size(), ("invalid --since `" + text + "`: ").size() + 10) << m;
    }
}

} // namespace

TEST(QueryTime, ParsesRfc3339DatesUnixSecondsAndDurations) {
    const int64_t t = utc(2026, 11, 23, 5, 12, 33);
    EXPECT_EQ(parseTime("2026-11-23T05:12:33Z", "--since", 0), t);
    EXPECT_EQ(parseTime("2026-11-23t05:12:33z", "--since", 0), t);
    EXPECT_EQ(parseTime("2026-11-23 05:12:33Z", "--since", 0), t);
    EXPECT_EQ(parseTime("2026-11-23T05:12:33.727227470Z", "--since", 0), t + 727227470);
    EXPECT_EQ(parseTime("2026-11-23T05:12:33.5Z", "--since", 0), t + 500000000);
    EXPECT_EQ(parseTime("2026-11-23T05:12:33.1234567891Z", "--since", 0), t + 123456789);
    EXPECT_EQ(parseTime("2026-11-23T06:12:33+01:00", "--since", 0), t);
    EXPECT_EQ(parseTime("2026-11-23T00:42:33-04:30", "--since", 0), t);
    EXPECT_EQ(parseTime("2026-11-23", "--since", 0), utc(2026, 11, 23, 0, 0, 0));
    EXPECT_EQ(parseTime("2024-02-29", "--since", 0), utc(2024, 2, 29, 0, 0, 0));
    EXPECT_EQ(parseTime("1969-12-31T23:59:59Z", "--since", 0), -kSecond);
    EXPECT_EQ(parseTime("1795000000", "--since", 0), kBase);
    EXPECT_EQ(parseTime("1795000000.5", "--since", 0), kBase + kSecond / 2);
    EXPECT_EQ(parseTime("90s", "--since", kBase), kBase - 90 * kSecond);
    EXPECT_EQ(parseTime("10m", "--since", kBase), kBase - 600 * kSecond);
    EXPECT_EQ(parseTime("1h30m", "--since", kBase), kBase - 5400 * kSecond);
    EXPECT_EQ(parseTime("2d", "--since", kBase), kBase - 2 * 86400 * kSecond);
    EXPECT_EQ(parseTime("250ms", "--since", kBase), kBase - kSecond / 4);
}

TEST(QueryTime, RejectsBadInputNamingTheOptionAndValue) {
    for (const char *bad : {"",
                            "yesterday",
                            "2026-13-01",
                            "10x",
                            "-5m",
                            "1e9",
                            "2026-00-10",
                            "2026-02-29",
                            "2026-04-31",
                            "2026-11-23T24:00:00Z",
                            "2026-11-23T05:60:00Z",
                            "2026-11-23T05:12:61Z",
                            "2026-11-23T05:12:33",
                            "2026-11-23T05:12:33+1",
                            "2026-11-23T05:12:33+25:00",
                            "2026-11-23T05:12:33Zjunk",
                            "2026-11-23T05:12",
                            "2026-11-23X05:12:33Z",
                            "2026-1-23",
                            "1795000000.",
                            "1795000000.5.5",
                            "99999999999999999999",
                            "1h30",
                            "1.5h",
                            "5 m",
                            "now",
                            " 10m",
                            "10m ",
                            "1000000000d",
                            "0001-01-01",
                            "+5m"})
        expectInvalid(bad);

    try {
        parseTime("2026-13-01", "--until", 0);
        FAIL();
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "invalid --until `2026-13-01`: month `13` is out of range (01 to 12)");
    }
    try {
        parseTime("10x", "--since", kBase);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("unknown unit `x`"), std::string::npos) << e.what();
    }
    try {
        parseTime("-5m", "--since", kBase);
        FAIL();
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("`5m`"), std::string::npos) << e.what();
    }
    // Before the epoch is out of the question for a duration.
    expectInvalid("30000d");
    EXPECT_NO_THROW(parseTime("100d", "--since", kBase));
}

TEST(QueryTime, FormatsNineFractionDigitsAndRoundTrips) {
    EXPECT_EQ(formatTime(0), "1970-01-01T00:00:00.000000000Z");
    EXPECT_EQ(formatTime(utc(2026, 11, 23, 5, 12, 33) + 727227470),
              "2026-11-23T05:12:33.727227470Z");
    EXPECT_EQ(formatTime(utc(2000, 2, 29, 23, 59, 59) + 999999999),
              "2000-02-29T23:59:59.999999999Z");
    EXPECT_EQ(formatTime(-1), "1969-12-31T23:59:59.999999999Z");
    EXPECT_EQ(formatTime(INT64_MAX), "2262-04-11T23:47:16.854775807Z");
    EXPECT_EQ(formatTime(INT64_MIN), "1677-09-21T00:12:43.145224192Z");
    for (int64_t t :
         {kBase, kBase + 1, kBase + 86399 * kSecond + 123, int64_t(4102444800) * kSecond})
        EXPECT_EQ(parseTime(formatTime(t), "--since", 0), t) << formatTime(t);
}

TEST(QueryJson, Utf8ValidationFollowsTheStandard) {
    EXPECT_TRUE(validUtf8(""));
    EXPECT_TRUE(validUtf8("plain ascii text, long enough for the fast path"));
    EXPECT_TRUE(validUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
    EXPECT_FALSE(validUtf8("\xC0\x80"));         // overlong NUL
    EXPECT_FALSE(validUtf8("\xE0\x80\xAF"));     // overlong
    EXPECT_FALSE(validUtf8("\xED\xA0\x80"));     // surrogate
    EXPECT_FALSE(validUtf8("\xF4\x90\x80\x80")); // past U+10FFFF
    EXPECT_FALSE(validUtf8("abcdefgh\xE2\x82")); // truncated at the end
    EXPECT_FALSE(validUtf8("\xFF"));
    EXPECT_FALSE(validUtf8("\x80 continuation first"));
}

TEST(QueryJson, LineJsonFieldsAndBinaryDataRoundTrip) {
    const std::string binary("bin\xFF\xFE\0\x01 \xE2\x82 end", 14);
    Record r;
    r.offset = 1234;
    r.type = RecordType::err;
    r.flags = kPartial;
    r.time = kBase + 5;
    r.data = binary;
    json j = lineJson(r, "abc123", "web");
    EXPECT_EQ(j["time"], formatTime(kBase + 5));
    EXPECT_EQ(j["container"], "abc123");
    EXPECT_EQ(j["name"], "web");
    EXPECT_EQ(j["stream"], "stderr");
    EXPECT_EQ(j["offset"], 1234u);
    EXPECT_EQ(j["partial"], true);
    EXPECT_EQ(unbase64(j["data"].get<std::string>()), binary);
    EXPECT_EQ(j["line"], std::string("bin\xEF\xBF\xBD\xEF\xBF\xBD\0\x01 \xEF\xBF\xBD end", 19));
    EXPECT_NO_THROW(j.dump());

    r.flags = 0;
    r.type = RecordType::out;
    r.data = "caf\xC3\xA9";
    json k = lineJson(r, "abc123", "web");
    EXPECT_FALSE(k.contains("data"));
    EXPECT_FALSE(k.contains("partial"));
    EXPECT_EQ(k["line"], "caf\xC3\xA9");
    EXPECT_EQ(k["stream"], "stdout");

    EXPECT_EQ(base64(""), "");
    EXPECT_EQ(base64("f"), "Zg==");
    EXPECT_EQ(base64("fo"), "Zm8=");
    EXPECT_EQ(base64("foo"), "Zm9v");
    EXPECT_EQ(base64("foob"), "Zm9vYg==");
}

// The writer show and export use produces what lineJson(...).dump() does, byte for byte.
TEST(QueryJson, FastWriterMatchesLineJsonDump) {
    std::vector<std::string> samples = {"",
                                        "plain",
                                        "quote \" backslash \\ slash /",
                                        "tab\tnl\ncr\rbs\bff\f",
                                        "del \x7F",
                                        "caf\xC3\xA9",
                                        "\xF0\x9F\x98\x80",
                                        std::string("nul\0x", 5),
                                        "bad \xFF\xC0\x80 \xE2\x82",
                                        "\xED\xA0\x80"};
    for (int c = 0; c < 256; ++c) samples.push_back(std::string(1, char(c)) + "x");
    Record r;
    r.time = kBase + 42;
    for (const std::string &s : samples) {
        for (uint8_t flags : {uint8_t(0), uint8_t(kPartial)}) {
            r.data = s;
            r.flags = flags;
            r.offset = s.size() * 1000003ull;
            r.type = flags ? RecordType::err : RecordType::out;
            std::string fast;
            appendLineJson(fast, r, "c0ffee", "name \"q\"");
            EXPECT_EQ(fast, lineJson(r, "c0ffee", "name \"q\"").dump()) << json(base64(s));
        }
    }
}

TEST(QueryShow, PlainSplitsStreamsAndMergesWithoutErrFd) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 9);
    ShowOptions o;
    Shown s = showBoth(dir, o);
    EXPECT_EQ(s.lines, 9u);
    EXPECT_EQ(s.out, "out 0\nout 1\nout 3\nout 4\nout 6\nout 7\n");
    EXPECT_EQ(s.err, "err 2\nerr 5\nerr 8\n");
    EXPECT_EQ(showOne(dir, o), "out 0\nout 1\nerr 2\nout 3\nout 4\nerr 5\nout 6\nout 7\nerr 8\n");

    // stdout and stderr on one file keep their order.
    Capture both;
    show(dir, o, both.fd(), both.fd());
    EXPECT_EQ(both.text(), showOne(dir, o));
}

TEST(QueryShow, AbsentJournalShowsNothing) {
    TempDir tmp;
    EXPECT_EQ(showOne(tmp.path() + "/none", ShowOptions{}), "");
}

TEST(QueryShow, TimestampsPrefixEachLine) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 3);
    ShowOptions o;
    o.timestamps = true;
    EXPECT_EQ(showOne(dir, o), formatTime(kBase) + " out 0\n" + formatTime(kBase + kSecond) +
                                   " out 1\n" + formatTime(kBase + 2 * kSecond) + " err 2\n");
}

TEST(QueryShow, JsonLinesCarryEveryFieldAndBinaryData) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    const std::string binary("\x00\xFF\xFEraw\x80", 7);
    {
        JournalWriter w(dir, Retention{});
        w.add(RecordType::out, 0, kBase, "hello \"world\"");
        w.add(RecordType::err, 0, kBase + 1, binary);
        w.finish();
    }
    ShowOptions o;
    o.json = true;
    o.containerId = "0123456789abcdef";
    o.name = "web";
    Shown s = showBoth(dir, o);
    EXPECT_EQ(s.err, ""); // JSON goes to the output, both streams
    auto lines = split(s.out);
    ASSERT_EQ(lines.size(), 2u);
    json a = json::parse(lines[0]), b = json::parse(lines[1]);
    EXPECT_EQ(a["line"], "hello \"world\"");
    EXPECT_EQ(a["stream"], "stdout");
    EXPECT_EQ(a["container"], "0123456789abcdef");
    EXPECT_EQ(a["name"], "web");
    EXPECT_EQ(a["time"], formatTime(kBase));
    EXPECT_FALSE(a.contains("data"));
    EXPECT_EQ(b["stream"], "stderr");
    EXPECT_EQ(unbase64(b["data"].get<std::string>()), binary);
    JournalReader reader(dir);
    auto rec = reader.at(b["offset"].get<uint64_t>());
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->data, binary);
}

TEST(QueryShow, StreamFilter) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 9);
    ShowOptions o;
    o.stream = 2;
    Shown s = showBoth(dir, o);
    EXPECT_EQ(s.out, "");
    EXPECT_EQ(s.err, "err 2\nerr 5\nerr 8\n");
    EXPECT_EQ(s.lines, 3u);
    o.stream = 1;
    EXPECT_EQ(showOne(dir, o), "out 0\nout 1\nout 3\nout 4\nout 6\nout 7\n");
}

TEST(QueryShow, SinceAndUntilAreInclusive) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 9);
    ShowOptions o;
    o.since = kBase + 3 * kSecond;
    o.until = kBase + 6 * kSecond;
    EXPECT_EQ(showOne(dir, o), "out 3\nout 4\nerr 5\nout 6\n");
    o.until = 0;
    o.since = kBase + 7 * kSecond + 1;
    EXPECT_EQ(showOne(dir, o), "err 8\n");
    o.since = kBase + 100 * kSecond;
    EXPECT_EQ(showOne(dir, o), "");
}

TEST(QueryShow, TailCountsLinesAfterFilters) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 9);
    ShowOptions o;
    o.tail = 3;
    EXPECT_EQ(showOne(dir, o), "out 6\nout 7\nerr 8\n");
    o.tail = 1000;
    EXPECT_EQ(split(showOne(dir, o)).size(), 9u);
    o.tail = 0;
    Shown s = showBoth(dir, o);
    EXPECT_EQ(s.out + s.err, "");
    EXPECT_EQ(s.lines, 0u);
    o.tail = 2;
    o.stream = 2;
    EXPECT_EQ(showOne(dir, o), "err 5\nerr 8\n");
    o.stream = 0;
    o.until = kBase + 4 * kSecond;
    EXPECT_EQ(showOne(dir, o), "out 3\nout 4\n");
}

TEST(QueryShow, PartialRecordsJoinIntoOneLine) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    {
        JournalWriter w(dir, Retention{});
        w.add(RecordType::out, kPartial, kBase, "ab");
        w.add(RecordType::err, 0, kBase + 1, "e1");
        w.add(RecordType::out, kPartial, kBase + 2, "cd");
        w.add(RecordType::err, kPartial, kBase + 3, "e2-");
        w.add(RecordType::out, 0, kBase + 4, "ef");
        w.add(RecordType::out, 0, kBase + 5, "next");
        w.add(RecordType::err, 0, kBase + 6, "done");
        w.add(RecordType::out, kPartial, kBase + 7, "prompt> ");
        w.finish(); // the writer went with the last line unterminated
    }
    ShowOptions o;
    EXPECT_EQ(showOne(dir, o), "e1\nabcdef\nnext\ne2-done\nprompt> \n");
    Shown s = showBoth(dir, o);
    EXPECT_EQ(s.lines, 5u);
    EXPECT_EQ(s.out, "abcdef\nnext\nprompt> \n");
    EXPECT_EQ(s.err, "e1\ne2-done\n");

    // The time of a joined line is its first piece's, for filters and prefixes alike.
    o.timestamps = true;
    o.stream = 1;
    o.since = kBase;
    o.until = kBase + 1;
    EXPECT_EQ(showOne(dir, o), formatTime(kBase) + " abcdef\n");

    ShowOptions t;
    // Lines count where they start: the last two are `next` and `prompt> `.
    t.tail = 2;
    EXPECT_EQ(showOne(dir, t), "next\nprompt> \n");
    t.tail = 4;
    EXPECT_EQ(showOne(dir, t), "e1\nnext\ne2-done\nprompt> \n");

    ShowOptions j;
    j.json = true;
    auto lines = split(showOne(dir, j));
    ASSERT_EQ(lines.size(), 5u);
    json first = json::parse(lines[1]);
    EXPECT_EQ(first["line"], "abcdef");
    EXPECT_FALSE(first.contains("partial"));
    EXPECT_EQ(first["time"], formatTime(kBase));
    json last = json::parse(lines[4]);
    EXPECT_EQ(last["line"], "prompt> ");
    EXPECT_EQ(last["partial"], true);
}

TEST(QueryShow, PartialLineEndsWithItsRun) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    {
        JournalWriter w(dir, Retention{});
        w.add(RecordType::out, kPartial, kBase, "cut");
        w.finish();
    }
    {
        JournalWriter w(dir, Retention{});
        w.add(RecordType::out, 0, kBase + 1, "fresh");
        w.finish();
    }
    EXPECT_EQ(showOne(dir, ShowOptions{}), "cut\nfresh\n");
}

TEST(QueryShow, StopsQuietlyOnAClosedPipe) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    writeMixed(dir, 50000);
    ::signal(SIGPIPE, SIG_IGN); // as the caller does
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    ::close(p[0]);
    ShowOptions o;
    uint64_t n = 1;
    EXPECT_NO_THROW(n = show(dir, o, p[1], -1));
    EXPECT_LT(n, 50000u);
    o.follow = true; // even following: the reader is gone, so is the point
    {
        JournalWriter live(dir, Retention{});
        EXPECT_NO_THROW(show(dir, o, p[1], -1));
    }
    ::close(p[1]);
}

namespace {

// Blocks until the thread `tid` waits in one of `calls`. False after 20 s.
bool waitForSyscall(const std::atomic<pid_t> &tid, std::initializer_list<long> calls) {
    for (int i = 0; i < 20000; ++i) {
        if (pid_t t = tid.load()) {
            std::ifstream in("/proc/self/task/" + std::to_string(t) + "/syscall");
            long nr = -1;
            if (in >> nr && std::find(calls.begin(), calls.end(), nr) != calls.end()) return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

// A follower that caught up with the journal sleeps in poll(2).
bool waitUntilPolling(const std::atomic<pid_t> &tid) {
#ifdef SYS_poll
    return waitForSyscall(tid, {SYS_poll, SYS_ppoll});
#else
    return waitForSyscall(tid, {SYS_ppoll});
#endif
}

// Lines "<i>" of stdout; every line and its order checked.
void expectSequence(const std::string &text, uint64_t from, uint64_t count) {
    auto lines = split(text);
    ASSERT_EQ(lines.size(), count);
    for (uint64_t i = 0; i < count; ++i)
        if (lines[i] != std::to_string(from + i)) {
            ADD_FAILURE() << "line " << i << " is `" << lines[i] << "`";
            return;
        }
}

} // namespace

TEST(QueryFollow, EveryLineOnceAcrossRotationsUntilTheWriterGoes) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    constexpr int kLines = 200000;
    auto writer = std::make_unique<JournalWriter>(dir, segments(64 * 1024));
    Capture out;
    std::atomic<uint64_t> shown{0};
    std::thread follower([&] {
        ShowOptions o;
        o.follow = true;
        o.pollMs = 2;
        shown = show(dir, o, out.fd(), -1);
    });
    std::thread producer([&] {
        for (int i = 0; i < kLines; ++i) {
            writer->add(RecordType::out, 0, kBase + i, std::to_string(i));
            if (i % 997 == 0) writer->commit();
            if (i % 20000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        writer->finish();
    });
    producer.join();
    follower.join();
    EXPECT_GT(listSegments(dir).size(), 20u);
    EXPECT_EQ(shown.load(), uint64_t(kLines));
    expectSequence(out.text(), 0, kLines);
}

TEST(QueryFollow, StartedMidStreamSeesEarlierLinesOnce) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    JournalWriter writer(dir, segments(64 * 1024));
    for (int i = 0; i < 50000; ++i) writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
    writer.commit();
    Capture out;
    std::thread follower([&] {
        ShowOptions o;
        o.follow = true;
        o.pollMs = 1;
        show(dir, o, out.fd(), -1);
    });
    for (int i = 50000; i < 100000; ++i) {
        writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
        if (i % 1000 == 0) writer.commit();
    }
    writer.finish();
    follower.join();
    expectSequence(out.text(), 0, 100000);
}

TEST(QueryFollow, TailThenFollow) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    JournalWriter writer(dir, Retention{});
    for (int i = 0; i < 100; ++i) writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
    writer.add(RecordType::out, kPartial, kBase + 100, "10");
    writer.commit();
    Capture out;
    std::atomic<pid_t> tid{0};
    std::thread follower([&] {
        tid = ::gettid();
        ShowOptions o;
        o.follow = true;
        o.tail = 5;
        o.pollMs = 1;
        show(dir, o, out.fd(), -1);
    });
    EXPECT_TRUE(waitUntilPolling(tid));
    writer.add(RecordType::out, 0, kBase + 101, "0");
    for (int i = 101; i < 200; ++i) writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
    writer.finish();
    follower.join();
    expectSequence(out.text(), 96, 104);
}

TEST(QueryFollow, FromEndShowsOnlyNewLines) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    JournalWriter writer(dir, segments(64 * 1024));
    for (int i = 0; i < 20000; ++i) writer.add(RecordType::out, 0, kBase + i, "old");
    writer.add(RecordType::out, kPartial, kBase, "1"); // a line in progress at the attach
    writer.commit();
    Capture out;
    std::atomic<pid_t> tid{0};
    std::thread follower([&] {
        tid = ::gettid();
        ShowOptions o;
        o.follow = true;
        o.fromEnd = true;
        o.pollMs = 1;
        show(dir, o, out.fd(), -1);
    });
    EXPECT_TRUE(waitUntilPolling(tid));
    writer.add(RecordType::out, 0, kBase, "000");
    for (int i = 1001; i < 2000; ++i) writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
    writer.finish();
    follower.join();
    expectSequence(out.text(), 1000, 1000);
}

// The follower falls behind (its reader stops reading) while the retention removes the
// segments it has not read: it says how much it missed and goes on with what is left.
TEST(QueryFollow, WarnsAboutOutputRotatedAwayBeforeItWasRead) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    JournalWriter writer(dir, segments(64 * 1024, 512 * 1024));
    const std::string pad(40, 'x');
    int next = 0;
    auto write = [&](int n) {
        for (int i = 0; i < n; ++i, ++next)
            writer.add(RecordType::out, 0, kBase + next, std::to_string(next) + " " + pad);
        writer.commit();
    };
    write(5000); // ~300 KiB
    ::signal(SIGPIPE, SIG_IGN);
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    Capture err;
    std::atomic<pid_t> tid{0};
    std::thread follower([&] {
        tid = ::gettid();
        ShowOptions o;
        o.follow = true;
        o.pollMs = 1;
        show(dir, o, p[1], err.fd());
        ::close(p[1]);
    });
    EXPECT_TRUE(waitForSyscall(tid, {SYS_write})) << "the follower never filled the pipe";
    write(40000); // ~2.4 MiB: the first segments go
    std::string text;
    std::thread reader([&] {
        char buf[65536];
        ssize_t n;
        while ((n = ::read(p[0], buf, sizeof buf)) > 0) text.append(buf, size_t(n));
    });
    write(100);
    writer.finish();
    follower.join();
    reader.join();
    ::close(p[0]);

    EXPECT_NE(err.text().find("bytes of older output were rotated away before they could be read"),
              std::string::npos)
        << err.text();
    auto lines = split(text);
    ASSERT_FALSE(lines.empty());
    long last = -1;
    for (const std::string &l : lines) {
        long n = std::stol(l);
        ASSERT_GT(n, last) << "out of order or twice";
        last = n;
    }
    EXPECT_EQ(last, next - 1);
    EXPECT_LT(lines.size(), size_t(next));
}

TEST(QueryCursor, ReadSinceAdvancesAndStartsAtTheEnd) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    JournalWriter writer(dir, Retention{});
    for (int i = 0; i < 10; ++i) writer.add(RecordType::out, 0, kBase + i, std::to_string(i));
    writer.commit();

    uint64_t end = UINT64_MAX;
    EXPECT_TRUE(readSince(dir, "id", "n", end, 100).empty());
    EXPECT_EQ(end, writer.end());

    uint64_t cursor = 0;
    auto a = readSince(dir, "id", "n", cursor, 4);
    ASSERT_EQ(a.size(), 4u);
    EXPECT_EQ(a[0]["line"], "0");
    EXPECT_EQ(a[3]["line"], "3");
    EXPECT_EQ(a[0]["container"], "id");
    auto b = readSince(dir, "id", "n", cursor, 100);
    ASSERT_EQ(b.size(), 6u);
    EXPECT_EQ(b[0]["line"], "4");
    EXPECT_TRUE(readSince(dir, "id", "n", cursor, 100).empty());

    writer.add(RecordType::err, 0, kBase + 20, "late");
    writer.commit();
    auto c = readSince(dir, "id", "n", cursor, 100);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0]["line"], "late");
    EXPECT_EQ(c[0]["stream"], "stderr");
    auto d = readSince(dir, "id", "n", end, 100);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0]["line"], "late");
}

// Rates for the record, not asserted: 1,000,000 lines read and shown.
TEST(QueryPerformance, MillionLines) {
    TempDir tmp;
    std::string dir = tmp.path() + "/c";
    constexpr int kLines = 1'000'000;
    {
        JournalWriter w(dir, Retention{});
        char line[64];
        for (int i = 0; i < kLines; ++i) {
            int n = std::snprintf(line, sizeof line, "line %07d some typical log text here", i);
            w.add(i % 10 == 9 ? RecordType::err : RecordType::out, 0, kBase + i,
                  std::string_view(line, size_t(n)));
            if (i % 1000 == 999) w.commit();
        }
        w.finish();
    }
    auto rate = [](auto started) {
        double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        return static_cast<uint64_t>(kLines / s);
    };
    auto t0 = std::chrono::steady_clock::now();
    JournalReader reader(dir);
    uint64_t records = 0;
    while (auto r = reader.next()) records += r->isLine();
    uint64_t readRate = rate(t0);
    EXPECT_EQ(records, uint64_t(kLines));

    int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    ShowOptions o;
    t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(show(dir, o, devnull, -1), uint64_t(kLines));
    uint64_t plainRate = rate(t0);
    o.timestamps = true;
    t0 = std::chrono::steady_clock::now();
    show(dir, o, devnull, -1);
    uint64_t stampRate = rate(t0);
    o.timestamps = false;
    o.json = true;
    t0 = std::chrono::steady_clock::now();
    show(dir, o, devnull, -1);
    uint64_t jsonRate = rate(t0);
    o.json = false;
    o.tail = 10;
    t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(show(dir, o, devnull, -1), 10u);
    uint64_t tailRate = rate(t0);
    ::close(devnull);
    std::cout << "[ rates    ] 1M lines: read " << readRate << "/s, show " << plainRate
              << "/s, --timestamps " << stampRate << "/s, --json " << jsonRate << "/s, --tail 10 "
              << tailRate << "/s\n";
}
