// `logs analyze` over crafted journals and samples: known counts, peaks and patterns.
#include "Analyze.h"
#include "Index.h"
#include "Journal.h"
#include "Query.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

namespace mobileops::logcollector {
namespace {

using json = nlohmann::json;
using test::TempDir;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kS0 = 1'800'000'000; // seconds; a whole minute

int64_t at(int64_t second, int64_t ms = 0) { return (kS0 + second) * kSec + ms * 1'000'000; }

AnalyzeSource source(const TempDir &tmp) { return {tmp.path() + "/journal", "c0ffee", "web"}; }

const json *pattern(const json &report, const std::string &text) {
    for (const json &p : report["patterns"])
        if (p["pattern"] == text) return &p;
    return nullptr;
}

TEST(Analyze, PerformanceCountsLinesAndFindsThePeakSecond) {
    TempDir tmp;
    {
        JournalWriter w(source(tmp).dir, Retention{});
        for (int i = 0; i < 3; ++i) w.add(RecordType::out, 0, at(0, i), "a" + std::to_string(i));
        for (int i = 0; i < 7; ++i) w.add(RecordType::out, 0, at(1, i), "bbbb");
        for (int i = 0; i < 3; ++i) w.add(RecordType::err, 0, at(1, 10 + i), "ccc");
        w.add(RecordType::out, 0, at(2), "dd");
        w.add(RecordType::out, 0, at(2, 1), "dd");
        w.add(RecordType::out, kPartial, at(2, 2), "xxxxx"); // one line in two records
        w.add(RecordType::out, 0, at(2, 3), "yyyyy");
        w.add(RecordType::out, 0, at(61), "late");
        w.finish();
    }
    json report = analyzePerformance({source(tmp)});
    ASSERT_EQ(report.size(), 1u);
    const json &r = report[0];
    EXPECT_EQ(r["id"], "c0ffee");
    EXPECT_EQ(r["name"], "web");
    EXPECT_EQ(r["lines"], 17);
    EXPECT_EQ(r["bytes"], 61);
    EXPECT_EQ(r["streams"]["stdout"], json({{"lines", 14}, {"bytes", 52}}));
    EXPECT_EQ(r["streams"]["stderr"], json({{"lines", 3}, {"bytes", 9}}));
    EXPECT_EQ(r["first"], formatTime(at(0)));
    EXPECT_EQ(r["last"], formatTime(at(61)));
    EXPECT_EQ(r["duration_s"], 61.0);
    EXPECT_EQ(r["rate"]["peak"], 10);
    EXPECT_EQ(r["rate"]["peak_at"], formatTime(at(1)));
    EXPECT_EQ(r["rate"]["avg"], 0.3); // 17 lines over the 62 seconds they span
    ASSERT_EQ(r["busiest"].size(), 2u);
    EXPECT_EQ(r["busiest"][0], json({{"minute", formatTime(at(0))}, {"lines", 16}}));
    EXPECT_EQ(r["busiest"][1], json({{"minute", formatTime(at(60))}, {"lines", 1}}));
    EXPECT_EQ(r["partial"], 1);
    EXPECT_EQ(r["line_length"], json({{"avg", 3.6}, {"max", 10}}));
}

TEST(Analyze, AnEmptyOrMissingJournalHasNoLines) {
    TempDir tmp;
    json r = analyzePerformance({source(tmp)})[0];
    EXPECT_EQ(r["lines"], 0);
    EXPECT_EQ(r["first"], nullptr);
    EXPECT_EQ(r["rate"]["peak"], 0);
    json e = analyzeErrors({source(tmp)})[0];
    EXPECT_EQ(e["lines"], 0);
    EXPECT_EQ(e["patterns"], json::array());
}

TEST(Analyze, ErrorLinesAreFoldedIntoPatterns) {
    TempDir tmp;
    struct L {
        RecordType stream;
        const char *text;
    };
    const L lines[] = {
        {RecordType::out, "error 42 at 0xdeadbeef00"},
        {RecordType::err, "error 7 at 0x0123456789"},
        {RecordType::out, "WARNING: disk 91% full"},
        {RecordType::out, "request served in 5 ms"},
        {RecordType::err, "Traceback (most recent call last):"},
        {RecordType::err, "open /var/lib/app/data.db: permission denied"},
        {RecordType::err, "open /etc/app.conf: permission denied"},
        {RecordType::out, "connection timed out after 30s"},
        {RecordType::out, "the mirror terror reflects"},
        {RecordType::out, "ValueError: bad value 'abc'"},
        {RecordType::out, "java.lang.NullPointerException at Foo.java:12"},
        {RecordType::out, "login failed for 'bob' at 2026-11-23T05:12:33Z"},
        {RecordType::out, "login failed for \"alice\" at 2026-11-24 06:00:01.5"},
        {RecordType::out, "job 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed"},
        {RecordType::out, "job 0b9e6c1a-1111-4c2d-9e8f-aaaaaaaaaaaa failed"},
        {RecordType::out, "stderr buffering enabled"},
        {RecordType::out, "Deprecated: call to foo()"},
        {RecordType::out, "sha 3f2a9c1e7b: ok"},
    };
    {
        JournalWriter w(source(tmp).dir, Retention{});
        int64_t i = 0;
        for (const L &l : lines) w.add(l.stream, 0, at(i++), l.text);
        w.finish();
    }
    json r = analyzeErrors({source(tmp)})[0];
    EXPECT_EQ(r["lines"], 18);
    EXPECT_EQ(r["error_lines"], 11);
    EXPECT_EQ(r["warning_lines"], 3);

    const json *p = pattern(r, "error N at X");
    ASSERT_TRUE(p) << r.dump(2);
    EXPECT_EQ((*p)["level"], "error");
    EXPECT_EQ((*p)["count"], 2);
    EXPECT_EQ((*p)["first"], formatTime(at(0)));
    EXPECT_EQ((*p)["last"], formatTime(at(1)));
    EXPECT_EQ((*p)["example"], "error 42 at 0xdeadbeef00");
    EXPECT_EQ((*p)["stream"], "both");

    for (const char *folded :
         {"open /PATH: permission denied", "login failed for \"*\" at T", "job X failed"}) {
        p = pattern(r, folded);
        ASSERT_TRUE(p) << folded << "\n" << r.dump(2);
        EXPECT_EQ((*p)["count"], 2) << folded;
    }
    EXPECT_EQ((*pattern(r, "open /PATH: permission denied"))["stream"], "stderr");
    EXPECT_EQ((*pattern(r, "WARNING: disk N% full"))["level"], "warning");
    EXPECT_EQ((*pattern(r, "connection timed out after Ns"))["level"], "warning");
    EXPECT_EQ((*pattern(r, "Deprecated: call to foo()"))["level"], "warning");
    EXPECT_EQ((*pattern(r, "ValueError: bad value \"*\""))["level"], "error");
    EXPECT_EQ((*pattern(r, "java.lang.NullPointerException at Foo.java:N"))["count"], 1);
    EXPECT_TRUE(pattern(r, "Traceback (most recent call last):"));
    ASSERT_EQ(r["patterns"].size(), 10u);
    // The most frequent first; equal counts in the order they first appeared.
    EXPECT_EQ(r["patterns"][0]["pattern"], "error N at X");
    EXPECT_EQ(r["patterns"][1]["pattern"], "open /PATH: permission denied");
    EXPECT_EQ(r["patterns"][4]["count"], 1);
}

TEST(Analyze, AMillionLinesAreScannedQuickly) {
    TempDir tmp;
    constexpr int kLines = 1'000'000;
    {
        JournalWriter w(source(tmp).dir, Retention{});
        for (int i = 0; i < kLines; ++i) {
            std::string text =
                i % 1000 == 0  ? "ERROR request " + std::to_string(i) + " failed: code 500"
                : i % 500 == 0 ? "warn: slow response from 10.0.0." + std::to_string(i % 250)
                               : "GET /api/items/" + std::to_string(i) + " 200 " +
                                     std::to_string(i % 300) + "ms";
            w.add(i % 2 ? RecordType::err : RecordType::out, 0, at(i / 20'000, i % 1000), text);
            if (i % 10'000 == 9'999) w.commit();
        }
        w.finish();
    }
    auto t0 = std::chrono::steady_clock::now();
    json perf = analyzePerformance({source(tmp)})[0];
    auto t1 = std::chrono::steady_clock::now();
    json errors = analyzeErrors({source(tmp)})[0];
    auto t2 = std::chrono::steady_clock::now();
    EXPECT_EQ(perf["lines"], kLines);
    EXPECT_EQ(perf["rate"]["peak"], 20'000);
    EXPECT_EQ(errors["error_lines"], 1000);
    EXPECT_EQ(errors["warning_lines"], 1000);
    ASSERT_EQ(errors["patterns"].size(), 2u);
    EXPECT_EQ(errors["patterns"][0]["count"], 1000);
    EXPECT_EQ(errors["patterns"][0]["pattern"], "ERROR request N failed: code N");
    EXPECT_EQ(errors["patterns"][1]["pattern"], "warn: slow response from N.N.N.N");
    std::printf("[ measure  ] analyze 1M lines: performance %.0f ms, errors %.0f ms\n",
                std::chrono::duration<double, std::milli>(t1 - t0).count(),
                std::chrono::duration<double, std::milli>(t2 - t1).count());
}

TEST(Analyze, ResourcesFromSamples) {
    TempDir tmp;
    {
        JournalWriter w(source(tmp).dir, Retention{});
        w.finish();
        Index index(source(tmp).dir);
        // usage in ns: 50%, 100%, 0%, 20% of one CPU over the four 10 s intervals.
        const int64_t usage[] = {0, 5 * kSec, 15 * kSec, 15 * kSec, 17 * kSec};
        const int64_t memory[] = {100, 300, 200, 400, 250};
        const int pids[] = {1, 3, 2, 2, 1};
        for (int i = 0; i < 5; ++i)
            index.addSample({at(10 * i),
                             {{"cpu", {{"usage_ns", usage[i]}}},
                              {"memory", {{"current", memory[i]}, {"limit", nullptr}}},
                              {"pids", {{"current", pids[i]}}}}});
    }
    json r = analyzeResources({source(tmp)})[0];
    EXPECT_EQ(r["samples"], 5);
    EXPECT_EQ(r["interval_s"], 10.0);
    EXPECT_EQ(r["cpu"], json({{"avg_percent", 42.5}, {"max_percent", 100.0}}));
    EXPECT_EQ(r["memory"], json({{"min", 100}, {"avg", 250}, {"max", 400}, {"last", 250}}));
    EXPECT_EQ(r["pids"], json({{"max", 3}, {"last", 1}}));
    ASSERT_EQ(r["series"].size(), 5u);
    EXPECT_EQ(r["series"][0]["cpu_percent"], nullptr);
    EXPECT_EQ(
        r["series"][2],
        json({{"time", formatTime(at(20))}, {"cpu_percent", 100.0}, {"memory", 200}, {"pids", 2}}));
    EXPECT_FALSE(r.contains("note"));
}

TEST(Analyze, ResourceSeriesIsAtMostTwentyPointsOverTheWholeRun) {
    TempDir tmp;
    {
        JournalWriter w(source(tmp).dir, Retention{});
        w.finish();
        Index index(source(tmp).dir);
        for (int i = 0; i < 100; ++i) // a steady 25% of a CPU
            index.addSample({at(i), {{"cpu", {{"usage_ns", i * kSec / 4}}}}});
    }
    json r = analyzeResources({source(tmp)})[0];
    ASSERT_EQ(r["series"].size(), 20u);
    EXPECT_EQ(r["series"][0]["time"], formatTime(at(0)));
    EXPECT_EQ(r["series"][19]["time"], formatTime(at(99)));
    for (size_t i = 1; i < 20; ++i) EXPECT_EQ(r["series"][i]["cpu_percent"], 25.0);
    EXPECT_EQ(r["memory"], nullptr);
    EXPECT_EQ(r["cpu"]["avg_percent"], 25.0);
}

TEST(Analyze, NoSamplesGiveANote) {
    TempDir tmp;
    json r = analyzeResources({source(tmp)})[0];
    EXPECT_EQ(r["samples"], 0);
    EXPECT_TRUE(r["note"].is_string());
    EXPECT_FALSE(r.contains("cpu"));
}

} // namespace
} // namespace mobileops::logcollector
