#include "Journal.h"

#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mobileops::logcollector;
using mobileops::common::Error;
using mobileops::test::TempDir;

namespace {

struct Rec {
    uint64_t offset;
    RecordType type;
    uint8_t flags;
    int64_t time;
    std::string data;
};

std::vector<Rec> readAll(JournalReader &reader) {
    std::vector<Rec> out;
    while (auto r = reader.next())
        out.push_back({r->offset, r->type, r->flags, r->time, std::string(r->data)});
    return out;
}

std::vector<Rec> lines(const std::vector<Rec> &recs) {
    std::vector<Rec> out;
    for (const Rec &r : recs)
        if (r.type == RecordType::out || r.type == RecordType::err) out.push_back(r);
    return out;
}

uint64_t diskSize(const std::string &dir) {
    uint64_t total = 0;
    for (const Segment &s : listSegments(dir)) total += s.size;
    return total;
}

std::string seq(uint64_t i, size_t width) {
    std::string s = std::to_string(i);
    s.insert(0, width > s.size() ? width - s.size() : 0, '0');
    return s;
}

uint64_t seqOf(const std::string &data) { return std::stoull(data.substr(0, 12)); }

Retention small(uint64_t maxSize, uint64_t segmentSize) {
    Retention r;
    r.maxSize = maxSize;
    r.segmentSize = segmentSize;
    return r;
}

} // namespace

TEST(Journal, RoundTripKeepsEveryTypeAndAnyBytes) {
    TempDir tmp;
    std::string dir = tmp.path() + "/logs/c1";
    const std::string binary("a\0b\xff\xfe\x80z", 7);
    const std::string longLine(kMaxRecordData, 'x');
    {
        JournalWriter w(dir, Retention{});
        w.add(RecordType::out, 0, 11, "hello");
        w.add(RecordType::err, 0, 12, binary);
        w.add(RecordType::out, 0, 13, "");
        w.add(RecordType::out, kPartial, 14, "part");
        w.add(RecordType::out, 0, 15, "rest");
        w.add(RecordType::err, 0, 16, longLine);
        uint64_t end = w.commit();
        EXPECT_EQ(end, w.end());
        EXPECT_THROW(w.add(RecordType::out, 0, 17, std::string(kMaxRecordData + 1, 'y')), Error);
        w.finish("{\"code\":3}");
        EXPECT_THROW(w.add(RecordType::out, 0, 18, "late"), Error);
    }
    EXPECT_EQ(::access((dir + "/writer.lock").c_str(), F_OK), 0);
    struct stat st;
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0750u);

    JournalReader reader(dir);
    EXPECT_EQ(reader.seek(0), 0u);
    std::vector<Rec> recs = readAll(reader);
    ASSERT_EQ(recs.size(), 8u);
    EXPECT_EQ(recs[0].type, RecordType::start);
    EXPECT_EQ(recs[0].data, "{\"pid\":" + std::to_string(::getpid()) + "}");
    EXPECT_EQ(recs[1].data, "hello");
    EXPECT_EQ(recs[1].time, 11);
    EXPECT_EQ(recs[2].type, RecordType::err);
    EXPECT_EQ(recs[2].data, binary);
    EXPECT_EQ(recs[3].data, "");
    EXPECT_EQ(recs[4].flags, kPartial);
    EXPECT_EQ(recs[4].data, "part");
    EXPECT_EQ(recs[5].flags, 0);
    EXPECT_EQ(recs[6].data, longLine);
    EXPECT_EQ(recs[7].type, RecordType::end);
    EXPECT_EQ(recs[7].data, "{\"code\":3}");
    for (size_t i = 1; i < recs.size(); ++i)
        EXPECT_EQ(recs[i].offset, recs[i - 1].offset + kHeaderSize + recs[i - 1].data.size());
    EXPECT_EQ(reader.position(), reader.end());
    EXPECT_EQ(reader.takeGap(), 0u);

    // Random access gives the same records and leaves the sequential position alone.
    for (size_t i : {5, 2, 7, 0}) {
        auto r = reader.at(recs[i].offset);
        ASSERT_TRUE(r) << i;
        EXPECT_EQ(r->data, recs[i].data);
        EXPECT_EQ(r->type, recs[i].type);
        EXPECT_EQ(r->time, recs[i].time);
    }
    EXPECT_FALSE(reader.at(recs[1].offset + 3)); // not a record boundary
    EXPECT_FALSE(reader.at(reader.end()));
    EXPECT_FALSE(reader.next());

    EXPECT_EQ(reader.seek(recs[4].offset), recs[4].offset);
    auto r = reader.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, "part");
}

TEST(Journal, SegmentNamesAndSizes) {
    TempDir tmp;
    EXPECT_TRUE(listSegments(tmp.path() + "/absent").empty());
    for (const char *name :
         {"0000000000000000.log", "0000000000001000.log", "index.db", "000000000000100.log",
          "00000000000010000.log", "000000000000100G.log", "00000000000010AB.log",
          "0000000000002000.log.tmp", "0000000000002000.lo"})
        tmp.file(name, "abc");
    std::vector<Segment> segs = listSegments(tmp.path());
    ASSERT_EQ(segs.size(), 2u);
    EXPECT_EQ(segs[0].start, 0u);
    EXPECT_EQ(segs[1].start, 0x1000u);
    EXPECT_EQ(segs[1].size, 3u);
    EXPECT_EQ(segs[1].path, tmp.path() + "/0000000000001000.log");

    Retention r;
    r.maxSize = 0;
    EXPECT_EQ(r.effectiveSegmentSize(), 64ull << 20);
    r.maxSize = 100ull << 20;
    EXPECT_EQ(r.effectiveSegmentSize(), (100ull << 20) / 8);
    r.maxSize = 1 << 20;
    EXPECT_EQ(r.effectiveSegmentSize(), 128u << 10);
    r.maxSize = 100 << 10;
    EXPECT_EQ(r.effectiveSegmentSize(), 64u << 10);
    r.maxSize = 10ull << 30;
    EXPECT_EQ(r.effectiveSegmentSize(), 64ull << 20);
    r.segmentSize = 4096;
    EXPECT_EQ(r.effectiveSegmentSize(), 4096u);
}

TEST(Journal, TornTailIsNotYetWrittenThenRepaired) {
    TempDir tmp;
    std::string dir = tmp.path();
    uint64_t lastOffset = 0;
    {
        JournalWriter w(dir, Retention{});
        for (int i = 0; i < 100; ++i) w.add(RecordType::out, 0, i, "line " + std::to_string(i));
        lastOffset = w.commit();
        w.add(RecordType::err, 0, 100, "the torn one");
        w.commit();
    } // no finish: a writer that died
    std::vector<Segment> segs = listSegments(dir);
    ASSERT_EQ(segs.size(), 1u);
    ASSERT_EQ(::truncate(segs[0].path.c_str(), off_t(segs[0].size - 5)), 0);

    JournalReader reader(dir);
    std::vector<Rec> before = readAll(reader);
    ASSERT_EQ(before.size(), 101u); // start + 100
    EXPECT_EQ(before.back().data, "line 99");
    EXPECT_EQ(reader.position(), lastOffset);
    EXPECT_FALSE(reader.next()); // still not there, and not consumed

    // A header cut short is as much not-yet-written as cut data.
    ASSERT_EQ(::truncate(segs[0].path.c_str(), off_t(lastOffset + 7)), 0);
    EXPECT_FALSE(reader.next());
    EXPECT_EQ(reader.position(), lastOffset);

    {
        JournalWriter w(dir, Retention{});
        EXPECT_EQ(w.end(), lastOffset + kHeaderSize + std::strlen("{\"pid\":}") +
                               std::to_string(::getpid()).size());
        w.add(RecordType::out, 0, 200, "after the repair");
        w.finish();
    }
    std::vector<Rec> after = readAll(reader);
    ASSERT_EQ(after.size(), 3u);
    EXPECT_EQ(after[0].offset, lastOffset);
    EXPECT_EQ(after[0].type, RecordType::start);
    EXPECT_EQ(after[1].data, "after the repair");
    EXPECT_EQ(after[2].type, RecordType::end);

    JournalReader again(dir);
    std::vector<Rec> all = lines(readAll(again));
    ASSERT_EQ(all.size(), 101u);
    EXPECT_EQ(all[0].data, "line 0");
    EXPECT_EQ(all[100].data, "after the repair");
}

TEST(Journal, ZeroTailFromAMachineCrashIsTheEnd) {
    TempDir tmp;
    uint64_t end;
    {
        JournalWriter w(tmp.path(), Retention{});
        w.add(RecordType::out, 0, 1, "kept");
        end = w.commit();
    }
    std::string seg = listSegments(tmp.path())[0].path;
    ASSERT_EQ(::truncate(seg.c_str(), off_t(end + 4096)), 0);
    JournalReader reader(tmp.path());
    EXPECT_EQ(lines(readAll(reader)).size(), 1u);
    EXPECT_EQ(reader.position(), end);
    { JournalWriter w(tmp.path(), Retention{}); }
    EXPECT_GT(listSegments(tmp.path())[0].size, end);
    EXPECT_LT(listSegments(tmp.path())[0].size, end + 4096);
    auto r = reader.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->type, RecordType::start);
}

TEST(Journal, CorruptionInTheMiddleIsAClearError) {
    TempDir tmp;
    uint64_t bad = 0;
    {
        JournalWriter w(tmp.path(), Retention{});
        for (int i = 0; i < 10; ++i) {
            if (i == 5) bad = w.commit();
            w.add(RecordType::out, 0, i, "line " + std::to_string(i));
        }
        w.finish();
    }
    std::string seg = listSegments(tmp.path())[0].path;
    int fd = ::open(seg.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "XX", 2, off_t(bad + 6)), 2); // the magic
    ::close(fd);

    JournalReader reader(tmp.path());
    int read = 0;
    try {
        while (reader.next()) ++read;
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INTERNAL);
        EXPECT_EQ(std::string(e.what()),
                  "log segment `" + seg + "`: bad record at offset " + std::to_string(bad));
    }
    EXPECT_EQ(read, 6); // start + lines 0..4
    EXPECT_FALSE(reader.at(bad));
}

TEST(Journal, WriterLockMakesASecondWriterWaitThenFail) {
    TempDir tmp;
    std::string dir = tmp.path() + "/0123456789abcdef0123";
    JournalReader reader(dir);
    EXPECT_FALSE(reader.writerActive());
    auto first = std::make_unique<JournalWriter>(dir, Retention{});
    EXPECT_TRUE(reader.writerActive());
    auto started = std::chrono::steady_clock::now();
    try {
        JournalWriter second(dir, Retention{}, std::chrono::milliseconds(200));
        FAIL() << "second writer got the lock";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_BUSY);
        EXPECT_EQ(std::string(e.what()), "the log of `0123456789ab` is held by another writer "
                                         "(pid " +
                                             std::to_string(::getpid()) + ")");
    }
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(200));
    EXPECT_TRUE(reader.writerActive()); // the failed attempt did not disturb the holder

    // A waiting writer gets the lock once the first one finishes.
    std::thread release([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        first->finish();
    });
    {
        JournalWriter second(dir, Retention{}, std::chrono::seconds(10));
        EXPECT_TRUE(reader.writerActive());
        release.join();
        second.finish();
    }
    EXPECT_FALSE(reader.writerActive());
    first.reset();
    std::vector<Rec> recs = readAll(reader);
    ASSERT_EQ(recs.size(), 4u);
    EXPECT_EQ(recs[0].type, RecordType::start);
    EXPECT_EQ(recs[1].type, RecordType::end);
    EXPECT_EQ(recs[2].type, RecordType::start);
    EXPECT_EQ(recs[3].type, RecordType::end);
}

TEST(Journal, RotationKeepsTheNewestWithinMaxSize) {
    TempDir tmp;
    const Retention retention = small(1 << 20, 64 << 10);
    const std::string pad(88, 'p');
    uint64_t n = 0, written = 0;
    {
        JournalWriter w(tmp.path(), retention);
        while (written < (10u << 20)) {
            for (int i = 0; i < 40; ++i, ++n) {
                std::string line = seq(n, 12) + pad;
                w.add(RecordType::out, 0, int64_t(n), line);
                written += kHeaderSize + line.size();
            }
            w.commit();
            ASSERT_LE(diskSize(tmp.path()), retention.maxSize + retention.segmentSize + 4096);
        }
        w.finish();
    }
    std::vector<Segment> segs = listSegments(tmp.path());
    EXPECT_GT(segs.size(), 10u);
    EXPECT_LE(diskSize(tmp.path()), retention.maxSize + retention.segmentSize + 4096);
    for (size_t i = 1; i < segs.size(); ++i)
        EXPECT_EQ(segs[i].start, segs[i - 1].start + segs[i - 1].size);

    JournalReader reader(tmp.path());
    EXPECT_EQ(reader.seek(0), segs[0].start);
    EXPECT_EQ(reader.takeGap(), segs[0].start);
    EXPECT_EQ(reader.takeGap(), 0u);
    std::vector<Rec> recs = lines(readAll(reader));
    ASSERT_FALSE(recs.empty());
    EXPECT_EQ(reader.takeGap(), 0u);
    uint64_t first = seqOf(recs[0].data);
    EXPECT_GT(first, 0u);
    for (size_t i = 0; i < recs.size(); ++i) ASSERT_EQ(seqOf(recs[i].data), first + i);
    EXPECT_EQ(seqOf(recs.back().data), n - 1);
    EXPECT_GE(recs.size() * (kHeaderSize + 100), retention.maxSize - retention.segmentSize);

    // An offset rotated away moves to the oldest kept record.
    JournalReader late(tmp.path());
    EXPECT_EQ(late.seek(100), segs[0].start);
    EXPECT_EQ(late.takeGap(), segs[0].start - 100);
    EXPECT_FALSE(late.at(100));
}

TEST(Journal, MaxAgeRemovesOldSegments) {
    TempDir tmp;
    Retention retention = small(0, 4096);
    retention.maxAge = int64_t(3600) * 1'000'000'000;
    {
        JournalWriter w(tmp.path(), retention);
        for (int i = 0; i < 1000; ++i) {
            w.add(RecordType::out, 0, i, seq(uint64_t(i), 12) + std::string(50, 'a'));
            if (i % 10 == 9) w.commit();
        }
        w.finish();
    }
    std::vector<Segment> segs = listSegments(tmp.path());
    ASSERT_GT(segs.size(), 10u); // young: all kept
    timespec old[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
    for (size_t i = 0; i + 3 < segs.size(); ++i)
        ASSERT_EQ(::utimensat(AT_FDCWD, segs[i].path.c_str(), old, 0), 0);
    { JournalWriter w(tmp.path(), retention); }
    std::vector<Segment> kept = listSegments(tmp.path());
    ASSERT_GE(kept.size(), 3u);
    EXPECT_EQ(kept[0].start, segs[segs.size() - 3].start);

    JournalReader reader(tmp.path());
    std::vector<Rec> recs = lines(readAll(reader));
    EXPECT_EQ(reader.takeGap(), kept[0].start);
    ASSERT_FALSE(recs.empty());
    EXPECT_EQ(seqOf(recs.back().data), 999u);
}

TEST(Journal, ReaderFollowsALiveWriterAcrossRotations) {
    TempDir tmp;
    const Retention retention = small(0, 8192);
    constexpr uint64_t kLines = 200'000;
    std::atomic<bool> failed{false};
    std::thread writer([&] {
        try {
            JournalWriter w(tmp.path(), retention);
            for (uint64_t i = 0; i < kLines;) {
                size_t batch = 1 + i % 37;
                for (size_t k = 0; k < batch && i < kLines; ++k, ++i)
                    w.add(i % 3 ? RecordType::out : RecordType::err, 0, int64_t(i), seq(i, 12));
                w.commit();
                if (i % 10'000 < 37) std::this_thread::yield();
            }
            w.finish();
        } catch (...) {
            failed = true;
        }
    });
    JournalReader reader(tmp.path());
    uint64_t expect = 0;
    bool ended = false;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!ended && std::chrono::steady_clock::now() < deadline) {
        auto r = reader.next();
        if (!r) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            continue;
        }
        if (r->type == RecordType::end) ended = true;
        if (!r->isLine()) continue;
        ASSERT_EQ(seqOf(std::string(r->data)), expect);
        ++expect;
    }
    writer.join();
    EXPECT_FALSE(failed);
    EXPECT_TRUE(ended);
    EXPECT_EQ(expect, kLines);
    EXPECT_EQ(reader.takeGap(), 0u);
    EXPECT_GT(listSegments(tmp.path()).size(), 100u);
}

TEST(Journal, FailedWritesAreRetriedThenReported) {
    // RLIMIT_FSIZE makes write(2) fail with EFBIG without privileges: a full disk stand-in.
    TempDir tmp;
    rlimit saved;
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    auto oldHandler = ::signal(SIGXFSZ, SIG_IGN);
    auto restore = [&] {
        ::setrlimit(RLIMIT_FSIZE, &saved);
        ::signal(SIGXFSZ, oldHandler);
    };
    uint64_t kept = 0;
    try {
        JournalWriter w(tmp.path(), Retention{}, std::chrono::seconds(1),
                        std::chrono::milliseconds(300));
        w.add(RecordType::out, 0, 1, "fits");
        kept = w.commit();
        rlimit limit = saved;
        limit.rlim_cur = kept + 20;
        ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);

        // The space comes back while the writer waits: nothing is lost.
        std::thread later([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            ::setrlimit(RLIMIT_FSIZE, &saved);
        });
        w.add(RecordType::out, 0, 2, "waited for");
        kept = w.commit();
        later.join();

        limit.rlim_cur = kept + 20;
        ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
        auto started = std::chrono::steady_clock::now();
        w.add(RecordType::out, 0, 3, "never fits in twenty bytes");
        try {
            w.commit();
            ADD_FAILURE() << "no error";
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), -EFBIG);
            EXPECT_NE(std::string(e.what()).find("File too large"), std::string::npos);
        }
        EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(300));
        restore();
        EXPECT_EQ(w.end(), kept);
        EXPECT_EQ(listSegments(tmp.path())[0].size, kept); // the partial write was cut
        w.add(RecordType::out, 0, 4, "after");
        w.finish();
    } catch (...) {
        restore();
        throw;
    }
    JournalReader reader(tmp.path());
    std::vector<Rec> recs = lines(readAll(reader));
    ASSERT_EQ(recs.size(), 3u);
    EXPECT_EQ(recs[0].data, "fits");
    EXPECT_EQ(recs[1].data, "waited for");
    EXPECT_EQ(recs[2].data, "after");
}

TEST(Journal, WriteAndReadAMillionShortLines) {
    TempDir tmp;
    constexpr uint64_t kLines = 1'000'000;
    char line[10];
    std::memcpy(line, "line 00000", 10);
    uint64_t sumIn = 0;
    auto t0 = std::chrono::steady_clock::now();
    {
        JournalWriter w(tmp.path(), small(0, 0));
        for (uint64_t i = 0; i < kLines; ++i) {
            line[9] = char('0' + i % 10);
            line[8] = char('0' + i / 10 % 10);
            sumIn = sumIn * 31 + uint64_t(line[8] * 10 + line[9]);
            w.add(RecordType::out, 0, int64_t(i), std::string_view(line, 10));
            if (i % 4096 == 4095) w.commit();
        }
        w.finish();
    }
    auto t1 = std::chrono::steady_clock::now();
    JournalReader reader(tmp.path());
    uint64_t n = 0, sumOut = 0, bytes = 0;
    while (auto r = reader.next()) {
        if (!r->isLine()) continue;
        ASSERT_EQ(r->time, int64_t(n));
        sumOut = sumOut * 31 + uint64_t(r->data[8] * 10 + r->data[9]);
        bytes += r->data.size();
        ++n;
    }
    auto t2 = std::chrono::steady_clock::now();
    EXPECT_EQ(n, kLines);
    EXPECT_EQ(sumOut, sumIn);
    EXPECT_EQ(bytes, kLines * 10);
    double ws = std::chrono::duration<double>(t1 - t0).count();
    double rs = std::chrono::duration<double>(t2 - t1).count();
    double mb = double(diskSize(tmp.path())) / 1e6;
    std::printf("[ perf     ] write %.0f records/s %.1f MB/s, read %.0f records/s %.1f MB/s "
                "(%.1f MB on disk)\n",
                kLines / ws, mb / ws, kLines / rs, mb / rs, mb);
}

TEST(Journal, ReaderSkipsWhatRetentionRemovedUnderIt) {
    TempDir tmp;
    std::string dir = tmp.path() + "/later";
    JournalReader reader(dir);
    EXPECT_FALSE(reader.next()); // no journal yet
    EXPECT_EQ(reader.end(), 0u);
    const Retention retention = small(256 << 10, 16 << 10);
    JournalWriter w(dir, retention);
    uint64_t n = 0;
    auto write = [&](uint64_t lines) {
        for (uint64_t k = 0; k < lines; ++k, ++n)
            w.add(RecordType::out, 0, int64_t(n), seq(n, 12) + std::string(60, '-'));
        w.commit();
    };
    write(10);
    std::vector<Rec> first = lines(readAll(reader));
    ASSERT_EQ(first.size(), 10u);
    EXPECT_EQ(reader.takeGap(), 0u);
    // Read a little, then fall far behind: the segment being read is removed meanwhile.
    for (int i = 0; i < 200; ++i) write(50);
    std::vector<Rec> rest = lines(readAll(reader));
    uint64_t gap = reader.takeGap();
    EXPECT_GT(gap, 0u);
    ASSERT_FALSE(rest.empty());
    // What the reader still had open it may read to its end; after that only consecutive
    // records of the kept segments, through to the newest.
    size_t jump = 0;
    for (size_t i = 1; i < rest.size(); ++i) {
        uint64_t a = seqOf(rest[i - 1].data), b = seqOf(rest[i].data);
        ASSERT_GT(b, a);
        if (b != a + 1) {
            ++jump;
            EXPECT_EQ((b - a - 1) * (kHeaderSize + 72), gap);
        }
    }
    EXPECT_LE(jump, 1u);
    EXPECT_EQ(seqOf(rest.back().data), n - 1);
    EXPECT_EQ(reader.position(), w.end());

    // seek() within what is kept: back to a record read before, and forward again.
    uint64_t back = rest[rest.size() - 5].offset;
    EXPECT_EQ(reader.seek(back), back);
    auto r = reader.next();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->data, rest[rest.size() - 5].data);
    EXPECT_EQ(reader.seek(rest.back().offset), rest.back().offset);
    EXPECT_EQ(reader.next()->data, rest.back().data);
    EXPECT_FALSE(reader.next());
    EXPECT_EQ(reader.takeGap(), 0u);
    w.finish();
}

TEST(Journal, RandomAccessFollowsRotation) {
    TempDir tmp;
    JournalWriter w(tmp.path(), small(0, 4096));
    JournalReader reader(tmp.path());
    std::vector<uint64_t> offsets;
    for (uint64_t i = 0; i < 300; ++i) {
        offsets.push_back(w.end());
        w.add(RecordType::out, 0, int64_t(i), seq(i, 12) + std::string(40, '+'));
        w.commit();
        // Each new record, read while its segment is the newest one.
        auto r = reader.at(offsets.back());
        ASSERT_TRUE(r) << i;
        ASSERT_EQ(seqOf(std::string(r->data)), i);
    }
    EXPECT_GT(listSegments(tmp.path()).size(), 3u);
    for (uint64_t i : {299, 0, 150, 151, 3}) {
        auto r = reader.at(offsets[i]);
        ASSERT_TRUE(r) << i;
        EXPECT_EQ(seqOf(std::string(r->data)), i);
    }
    EXPECT_FALSE(reader.at(w.end()));
    EXPECT_FALSE(reader.at(w.end() + 1000));
    w.finish();
}
