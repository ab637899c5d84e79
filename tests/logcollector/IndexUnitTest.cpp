// The search index over real journals in temporary directories: exactly-once indexing,
// the search semantics, rotation and split lines.
#include "Index.h"
#include "Journal.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

namespace mobileops::logcollector {
namespace {

using test::TempDir;

constexpr int64_t kT0 = 1'800'000'000'000'000'000; // ns
constexpr int64_t kSec = 1'000'000'000;

std::string dirOf(const TempDir &tmp) { return tmp.path() + "/journal"; }

std::string lineText(uint64_t i) {
    return "request " + std::to_string(i) + " served in " + std::to_string(i % 97) +
           " ms by worker-" + std::to_string(i % 8);
}

// `count` ordinary lines, stdout, one a microsecond; commits every 10,000.
void writeLines(JournalWriter &w, uint64_t from, uint64_t count) {
    for (uint64_t i = from; i < from + count; ++i) {
        w.add(RecordType::out, 0, kT0 + int64_t(i) * 1000, lineText(i));
        if (i % 10'000 == 9'999) w.commit();
    }
    w.commit();
}

std::vector<Hit> search(Index &index, JournalReader &reader, SearchQuery query,
                        bool *more = nullptr) {
    return index.search(reader, query, more);
}

std::vector<Hit> find(Index &index, JournalReader &reader, const std::string &pattern,
                      size_t limit = 100) {
    SearchQuery q;
    q.pattern = pattern;
    q.limit = limit;
    return index.search(reader, q, nullptr);
}

std::vector<std::string> lines(const std::vector<Hit> &hits) {
    std::vector<std::string> out;
    for (const Hit &h : hits) out.push_back(h.line);
    return out;
}

template <class F> void expectError(F &&f, int code, const std::string &message) {
    try {
        f();
        ADD_FAILURE() << "no error; expected: " << message;
    } catch (const common::Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_EQ(std::string(e.what()), message);
    }
}

std::set<std::string> ftsTables(const std::string &dir) {
    sqlite3 *db = nullptr;
    std::set<std::string> out;
    EXPECT_EQ(sqlite3_open_v2((dir + "/index.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
              SQLITE_OK);
    sqlite3_stmt *st = nullptr;
    sqlite3_prepare_v2(db,
                       "SELECT name FROM sqlite_master WHERE name GLOB 'fts_*' AND type = "
                       "'table' AND name NOT GLOB 'fts_*_*'",
                       -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW)
        out.insert(reinterpret_cast<const char *>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

TEST(IndexQuery, WordsBecomeOnePhraseEndingInAPrefix) {
    EXPECT_EQ(Index::ftsQuery("Connection refused: port 8080"),
              "\"Connection refused port 8080\"*");
    EXPECT_EQ(Index::ftsQuery("say \"hi\" AND (bye)"), "\"say hi AND bye\"*");
    EXPECT_EQ(Index::ftsQuery("naïve café"), "\"naïve café\"*");
    expectError([] { Index::ftsQuery(" -- ... "); }, MO_E_INVALID,
                "search pattern ` -- ... ` has no words to look for");
    expectError([] { Index::ftsQuery(""); }, MO_E_INVALID,
                "search pattern `` has no words to look for");
}

TEST(Index, OpenNamesTheFileWhenItCannot) {
    TempDir tmp;
    try {
        Index index(tmp.path() + "/missing");
        ADD_FAILURE() << "opened an index in a missing directory";
    } catch (const common::Error &e) {
        EXPECT_NE(std::string(e.what()).find(tmp.path() + "/missing/index.db"), std::string::npos)
            << e.what();
    }
}

TEST(Index, IndexesEachRecordOnceAcrossUpdates) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    writeLines(w, 0, 1000);
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    EXPECT_EQ(index.update(reader), 1001u); // the start record and the lines
    EXPECT_EQ(index.indexedTo(), reader.end());
    EXPECT_EQ(index.update(reader), 0u);

    writeLines(w, 1000, 500);
    EXPECT_EQ(index.update(reader), 500u);
    EXPECT_EQ(index.update(reader), 0u);

    auto hits = find(index, reader, "served", 0);
    ASSERT_EQ(hits.size(), 1500u);
    std::set<uint64_t> offsets;
    for (size_t i = 0; i < hits.size(); ++i) {
        EXPECT_EQ(hits[i].line, lineText(i));
        offsets.insert(hits[i].offset);
    }
    EXPECT_EQ(offsets.size(), 1500u);

    // A second Index object on the same file (another process, or a restart) starts where
    // the first one stopped.
    writeLines(w, 1500, 10);
    Index again(dirOf(tmp));
    EXPECT_EQ(again.update(reader), 10u);
    EXPECT_EQ(index.update(reader), 0u);
    auto summaries = index.summaries();
    ASSERT_EQ(summaries.size(), 1u);
    EXPECT_EQ(summaries[0].lines[1], 1510u);
    EXPECT_EQ(summaries[0].lines[2], 0u);
    EXPECT_EQ(summaries[0].firstTime, kT0);
    EXPECT_EQ(summaries[0].lastTime, kT0 + 1509 * 1000);
}

TEST(Index, MaxRecordsStepsThroughTheJournal) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    writeLines(w, 0, 100);
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    uint64_t total = 0, calls = 0;
    while (uint64_t n = index.update(reader, 7)) {
        EXPECT_LE(n, 7u);
        total += n;
        ++calls;
    }
    EXPECT_EQ(total, 101u);
    EXPECT_EQ(calls, 15u);
    EXPECT_EQ(find(index, reader, "served", 0).size(), 100u);
}

TEST(Index, TwoIndexesOnTwoThreadsIndexEachRecordOnce) {
    TempDir tmp;
    constexpr uint64_t kLines = 100'000;
    {
        JournalWriter w(dirOf(tmp), Retention{});
        writeLines(w, 0, kLines);
        w.finish();
    }
    uint64_t counts[2] = {0, 0};
    auto work = [&](int k) {
        Index index(dirOf(tmp));
        JournalReader reader(dirOf(tmp));
        while (uint64_t n = index.update(reader, 3000)) counts[k] += n;
    };
    std::thread a(work, 0), b(work, 1);
    a.join();
    b.join();
    EXPECT_EQ(counts[0] + counts[1], kLines + 2); // with the start and end records
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    auto hits = find(index, reader, "served", 0);
    ASSERT_EQ(hits.size(), kLines);
    for (uint64_t i = 0; i < kLines; ++i) ASSERT_EQ(hits[i].line, lineText(i)) << i;
}

TEST(Index, FindsANeedleAmongAMillionLines) {
    TempDir tmp;
    constexpr uint64_t kLines = 1'000'000, kNeedle = 654'321;
    {
        JournalWriter w(dirOf(tmp), Retention{});
        for (uint64_t i = 0; i < kLines; ++i) {
            w.add(i % 3 ? RecordType::out : RecordType::err, 0, kT0 + int64_t(i) * 1000,
                  i == kNeedle ? std::string("payment gateway zebrafish-7 rejected the card")
                               : lineText(i));
            if (i % 10'000 == 9'999) w.commit();
        }
        w.finish();
    }
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    auto t0 = std::chrono::steady_clock::now();
    uint64_t n = index.update(reader);
    double indexS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(n, kLines + 2);

    auto timed = [&](const SearchQuery &q, std::vector<Hit> &hits, bool *more) {
        auto s = std::chrono::steady_clock::now();
        hits = index.search(reader, q, more);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s)
            .count();
    };
    std::vector<Hit> hits;
    bool more = false;
    SearchQuery q;
    q.pattern = "zebrafish";
    double needleMs = timed(q, hits, &more);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].line, "payment gateway zebrafish-7 rejected the card");
    EXPECT_EQ(hits[0].time, kT0 + int64_t(kNeedle) * 1000);
    EXPECT_EQ(hits[0].stream, 2);
    EXPECT_FALSE(more);

    q.pattern = "Gateway Zebrafish-7";
    double phraseMs = timed(q, hits, &more);
    EXPECT_EQ(hits.size(), 1u);
    q.pattern = "gateway zebrafish 7"; // the words are there, the text is not
    EXPECT_TRUE(index.search(reader, q, nullptr).empty());

    q.pattern = "served in 42 ms";
    double commonMs = timed(q, hits, &more);
    ASSERT_EQ(hits.size(), 100u);
    EXPECT_TRUE(more);
    EXPECT_EQ(hits.back().line, lineText(kLines - 1 - (kLines - 1 - 42) % 97));

    q.pattern = "worker";
    q.stream = 2;
    q.since = kT0 + 500'000'000; // the middle
    q.until = kT0 + 500'010'000;
    double filteredMs = timed(q, hits, &more);
    EXPECT_EQ(hits.size(), 4u); // 500001, 500004, 500007, 500010

    std::printf("[ measure  ] index: %.0f records/s (%.2f s for %llu); search at 1M lines: "
                "needle %.2f ms, phrase %.2f ms, common phrase (100 of ~10k hits) %.2f ms, "
                "stream+time filtered %.2f ms\n",
                double(n) / indexS, indexS, static_cast<unsigned long long>(n), needleMs, phraseMs,
                commonMs, filteredMs);
}

TEST(Index, PhraseMatchesWordsTogetherInOrder) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    for (const char *text : {"connection refused by peer", "refused connection",
                             "connection was refused", "Connection-Refused again"})
        w.add(RecordType::out, 0, kT0, text);
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    index.update(reader);
    EXPECT_EQ(lines(find(index, reader, "connection refused")),
              std::vector<std::string>{"connection refused by peer"});
    EXPECT_EQ(lines(find(index, reader, "CONNECTION-refused")),
              std::vector<std::string>{"Connection-Refused again"});
    EXPECT_EQ(find(index, reader, "refused").size(), 4u);

    SearchQuery raw;
    raw.raw = true;
    raw.pattern = "connection AND refused";
    EXPECT_EQ(search(index, reader, raw).size(), 4u);
    raw.pattern = "connection NOT peer NOT again";
    EXPECT_EQ(lines(search(index, reader, raw)),
              (std::vector<std::string>{"refused connection", "connection was refused"}));
    raw.pattern = "NEAR(connection refused, 0)";
    EXPECT_EQ(search(index, reader, raw).size(), 3u);
}

TEST(Index, TheLastWordIsAPrefix) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    for (const char *text :
         {"timeout after 30s", "timeouts everywhere", "no time out", "retry after 3"})
        w.add(RecordType::out, 0, kT0, text);
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    index.update(reader);
    EXPECT_EQ(lines(find(index, reader, "timeo")),
              (std::vector<std::string>{"timeout after 30s", "timeouts everywhere"}));
    EXPECT_EQ(lines(find(index, reader, "after 3")),
              (std::vector<std::string>{"timeout after 30s", "retry after 3"}));
    EXPECT_TRUE(find(index, reader, "imeout").empty()); // only the last word is a prefix
    EXPECT_TRUE(find(index, reader, "tim after").empty());
}

TEST(Index, StreamAndTimeFilters) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    for (int i = 0; i < 10; ++i)
        w.add(i % 2 ? RecordType::err : RecordType::out, 0, kT0 + i * kSec,
              "tick " + std::to_string(i));
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    index.update(reader);
    SearchQuery q;
    q.pattern = "tick";
    EXPECT_EQ(search(index, reader, q).size(), 10u);
    q.stream = 2;
    EXPECT_EQ(lines(search(index, reader, q)),
              (std::vector<std::string>{"tick 1", "tick 3", "tick 5", "tick 7", "tick 9"}));
    q.stream = 1;
    q.since = kT0 + 3 * kSec;
    q.until = kT0 + 6 * kSec;
    EXPECT_EQ(lines(search(index, reader, q)), (std::vector<std::string>{"tick 4", "tick 6"}));
    q.stream = 0;
    q.since = kT0 + 20 * kSec;
    q.until = 0;
    EXPECT_TRUE(search(index, reader, q).empty());
}

TEST(Index, LimitKeepsTheNewestHitsOldestFirst) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    for (int i = 0; i < 10; ++i) w.add(RecordType::out, 0, kT0 + i, "event " + std::to_string(i));
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    index.update(reader);
    SearchQuery q;
    q.pattern = "event";
    q.limit = 3;
    bool more = false;
    EXPECT_EQ(lines(search(index, reader, q, &more)),
              (std::vector<std::string>{"event 7", "event 8", "event 9"}));
    EXPECT_TRUE(more);
    q.limit = 10;
    EXPECT_EQ(search(index, reader, q, &more).size(), 10u);
    EXPECT_FALSE(more);
}

TEST(Index, ABadRawExpressionIsInvalid) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    w.add(RecordType::out, 0, kT0, "alpha beta");
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    index.update(reader);
    SearchQuery q;
    q.raw = true;
    q.pattern = "alpha AND (";
    expectError([&] { index.search(reader, q, nullptr); }, MO_E_INVALID,
                "invalid search expression `alpha AND (`: fts5: syntax error near \"\"");
    q.pattern = "alpha OR gamma";
    EXPECT_EQ(search(index, reader, q).size(), 1u);
}

TEST(Index, FollowsRotation) {
    TempDir tmp;
    Retention retention;
    retention.maxSize = 256 << 10;
    retention.segmentSize = 64 << 10;
    JournalWriter w(dirOf(tmp), retention);
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    w.add(RecordType::out, 0, kT0, "the first needle is old");
    w.commit();
    for (int round = 0; round < 20; ++round) {
        for (int i = 0; i < 200; ++i)
            w.add(RecordType::out, 0, kT0 + round * kSec + i,
                  "round " + std::to_string(round) + " line " + std::to_string(i) +
                      " with some padding to fill the segments faster");
        w.commit();
        index.update(reader);
    }
    w.add(RecordType::err, 0, kT0 + 30 * kSec, "the second needle is new");
    w.commit();
    index.update(reader);

    std::vector<Segment> segments = listSegments(dirOf(tmp));
    ASSERT_GT(segments.size(), 1u);
    ASSERT_GT(segments.front().start, 0u) << "nothing was rotated away";
    std::set<std::string> expected;
    char name[32];
    for (const Segment &s : segments) {
        std::snprintf(name, sizeof name, "fts_%016llx", static_cast<unsigned long long>(s.start));
        expected.insert(name);
    }
    EXPECT_EQ(ftsTables(dirOf(tmp)), expected);
    auto summaries = index.summaries();
    ASSERT_EQ(summaries.size(), segments.size());
    for (size_t i = 0; i < segments.size(); ++i) EXPECT_EQ(summaries[i].start, segments[i].start);

    EXPECT_TRUE(find(index, reader, "needle").size() == 1);
    EXPECT_EQ(lines(find(index, reader, "needle")),
              std::vector<std::string>{"the second needle is new"});
    auto last = find(index, reader, "round 19 line 199");
    ASSERT_EQ(last.size(), 1u);
}

TEST(Index, ASplitLineIsFoundByAWordAcrossTheSplit) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    w.add(RecordType::out, kPartial, kT0, "hello wor");
    w.add(RecordType::err, 0, kT0 + 1, "unrelated");
    w.add(RecordType::out, kPartial, kT0 + 2, "ld and ag");
    w.add(RecordType::out, 0, kT0 + 3, "ain");
    w.add(RecordType::out, 0, kT0 + 4, "afterwards");
    w.commit();
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    EXPECT_EQ(index.update(reader), 6u);
    auto hits = find(index, reader, "world and again");
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].line, "hello world and again");
    EXPECT_EQ(hits[0].time, kT0);
    JournalReader check(dirOf(tmp));
    check.seek(0);
    check.next(); // the start record
    EXPECT_EQ(hits[0].offset, check.next()->offset);
    EXPECT_EQ(find(index, reader, "again").size(), 1u);
    EXPECT_TRUE(find(index, reader, "ain").empty()); // the pieces are not lines of their own
    EXPECT_TRUE(find(index, reader, "ld").empty());
    EXPECT_EQ(find(index, reader, "afterwards").size(), 1u);
    EXPECT_EQ(find(index, reader, "unrelated").size(), 1u);
}

TEST(Index, ASplitLineWaitsForItsContinuation) {
    TempDir tmp;
    JournalWriter w(dirOf(tmp), Retention{});
    Index index(dirOf(tmp));
    JournalReader reader(dirOf(tmp));
    // stdout's line completes, stderr's does not yet: indexing stops before stderr's first
    // piece and must not index stdout's continuation a second time when it resumes.
    w.add(RecordType::out, kPartial, kT0, "alpha bra");
    w.add(RecordType::err, kPartial, kT0 + 1, "gamma del");
    w.add(RecordType::out, 0, kT0 + 2, "vo charlie");
    w.commit();
    EXPECT_EQ(index.update(reader), 2u); // the start record and stdout's line
    EXPECT_EQ(lines(find(index, reader, "bravo")), std::vector<std::string>{"alpha bravo charlie"});
    EXPECT_TRUE(find(index, reader, "delta").empty());

    w.add(RecordType::err, 0, kT0 + 3, "ta echo");
    w.add(RecordType::out, 0, kT0 + 4, "vo charlie again");
    w.commit();
    EXPECT_EQ(index.update(reader), 4u);
    EXPECT_EQ(lines(find(index, reader, "delta")), std::vector<std::string>{"gamma delta echo"});
    EXPECT_EQ(lines(find(index, reader, "charlie", 0)),
              (std::vector<std::string>{"alpha bravo charlie", "vo charlie again"}));

    // A writer that is gone will not complete a line: it is indexed as it is.
    w.add(RecordType::out, kPartial, kT0 + 5, "unfinished busin");
    w.finish();
    index.update(reader);
    EXPECT_EQ(lines(find(index, reader, "busin")), std::vector<std::string>{"unfinished busin"});
    EXPECT_EQ(index.indexedTo(), reader.end());
}

TEST(Index, SamplesComeBackInTimeOrder) {
    TempDir tmp;
    Index index(tmp.path());
    for (int i : {3, 1, 2}) index.addSample({kT0 + i * kSec, {{"cpu", {{"usage_ns", i * 100}}}}});
    auto all = index.samples();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].time, kT0 + kSec);
    EXPECT_EQ(all[2].stats["cpu"]["usage_ns"], 300);
    auto some = index.samples(kT0 + 2 * kSec, kT0 + 2 * kSec);
    ASSERT_EQ(some.size(), 1u);
    EXPECT_EQ(some[0].stats["cpu"]["usage_ns"], 200);
}

} // namespace
} // namespace mobileops::logcollector
