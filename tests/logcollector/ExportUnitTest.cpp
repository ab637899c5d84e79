#include "Export.h"
#include "Journal.h"
#include "Query.h"

#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

using namespace mobileops::logcollector;
using mobileops::common::Error;
using mobileops::test::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kBase = 1'795'000'000 * kSecond;

struct Entry {
    std::string name, data;
    int64_t size = 0;
};

std::vector<Entry> readArchive(const std::string &path) {
    archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    std::vector<Entry> entries;
    if (archive_read_open_filename(a, path.c_str(), 65536) != ARCHIVE_OK) {
        ADD_FAILURE() << archive_error_string(a);
        archive_read_free(a);
        return entries;
    }
    archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        Entry entry{archive_entry_pathname(e), {}, archive_entry_size(e)};
        char buf[65536];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0) entry.data.append(buf, size_t(n));
        EXPECT_EQ(n, 0) << archive_error_string(a);
        entries.push_back(std::move(entry));
    }
    archive_read_free(a);
    return entries;
}

std::string sha256(const std::string &data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    std::string hex;
    char two[3];
    for (unsigned i = 0; i < len; ++i) {
        std::snprintf(two, sizeof two, "%02x", md[i]);
        hex += two;
    }
    return hex;
}

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// What the journal holds for a stream, in the export's text format, read independently
// of the exporter.
std::string expectedCri(const std::string &dir, RecordType stream, int64_t since = 0,
                        int64_t until = 0) {
    JournalReader reader(dir);
    std::string out;
    bool open = false, take = false;
    while (auto r = reader.next()) {
        if (r->type != stream) {
            if (!r->isLine()) open = false;
            continue;
        }
        if (!open) take = (!since || r->time >= since) && (!until || r->time <= until);
        open = r->partial();
        if (!take) continue;
        out += formatTime(r->time) + (r->partial() ? " P " : " F ") + std::string(r->data) + "\n";
    }
    return out;
}

uint64_t countLines(const std::string &text) {
    return uint64_t(std::count(text.begin(), text.end(), '\n'));
}

// Two containers with output and one that never wrote any.
std::vector<ExportSource> makeSources(const TempDir &tmp) {
    std::vector<ExportSource> sources = {
        {tmp.path() + "/logs/0123456789abcdef0123", "0123456789abcdef0123", "web"},
        {tmp.path() + "/logs/fedcba9876543210fedc", "fedcba9876543210fedc", "db"},
        {tmp.path() + "/logs/aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaa", "quiet"}};
    {
        JournalWriter w(sources[0].dir, Retention{});
        for (int i = 0; i < 1000; ++i) {
            bool err = i % 4 == 3;
            w.add(err ? RecordType::err : RecordType::out, 0, kBase + i * kSecond,
                  (err ? "warning " : "request ") + std::to_string(i));
        }
        w.add(RecordType::out, kPartial, kBase + 2000 * kSecond, "a long line, cut ");
        w.add(RecordType::out, 0, kBase + 2001 * kSecond, "and continued");
        w.add(RecordType::err, 0, kBase + 2002 * kSecond, std::string("bin\0\xFF\xFE\r", 7));
        w.finish();
    }
    {
        JournalWriter w(sources[1].dir, Retention{});
        for (int i = 0; i < 500; ++i)
            w.add(RecordType::out, 0, kBase + i, "row " + std::to_string(i));
        w.finish();
    }
    return sources;
}

void checkArchive(const std::string &path, const std::vector<ExportSource> &sources,
                  const json &report) {
    auto entries = readArchive(path);
    std::map<std::string, std::string> files;
    std::vector<std::string> names;
    for (const Entry &e : entries) {
        names.push_back(e.name);
        EXPECT_EQ(uint64_t(e.size), e.data.size()) << e.name;
        files[e.name] = e.data;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"web-0123456789ab/stdout.log",
                                               "web-0123456789ab/stderr.log",
                                               "db-fedcba987654/stdout.log", "manifest.json"}));
    EXPECT_EQ(files["web-0123456789ab/stdout.log"], expectedCri(sources[0].dir, RecordType::out));
    EXPECT_EQ(files["web-0123456789ab/stderr.log"], expectedCri(sources[0].dir, RecordType::err));
    EXPECT_EQ(files["db-fedcba987654/stdout.log"], expectedCri(sources[1].dir, RecordType::out));
    EXPECT_NE(files["web-0123456789ab/stdout.log"].find(" P a long line, cut \n"),
              std::string::npos);
    EXPECT_NE(files["web-0123456789ab/stderr.log"].find(std::string(" F bin\0\xFF\xFE\r\n", 10)),
              std::string::npos);

    json manifest = json::parse(files["manifest.json"]);
    EXPECT_EQ(manifest["format"], "mobileops-logs/1");
    EXPECT_TRUE(manifest["filters"]["since"].is_null());
    ASSERT_EQ(manifest["containers"].size(), 3u);
    uint64_t lines = 0;
    for (size_t i = 0; i < 3; ++i) {
        const json &c = manifest["containers"][i];
        EXPECT_EQ(c["id"], sources[i].containerId);
        EXPECT_EQ(c["name"], sources[i].name);
        for (const json &f : c["files"]) {
            const std::string &data = files[f["path"].get<std::string>()];
            EXPECT_EQ(f["lines"], countLines(data)) << f;
            EXPECT_EQ(f["bytes"], data.size()) << f;
            EXPECT_EQ(f["sha256"], sha256(data)) << f;
            EXPECT_EQ(f["first"], data.substr(0, kTimeLength)) << f;
            lines += f["lines"].get<uint64_t>();
        }
    }
    EXPECT_EQ(manifest["containers"][0]["files"].size(), 2u);
    EXPECT_EQ(manifest["containers"][0]["files"][1]["stream"], "stderr");
    EXPECT_EQ(manifest["containers"][0]["files"][0]["last"], formatTime(kBase + 2001 * kSecond));
    EXPECT_EQ(manifest["containers"][1]["files"][0]["lines"], 500u);
    EXPECT_TRUE(manifest["containers"][2]["files"].empty());

    std::string bytes = slurp(path);
    EXPECT_EQ(report["output"], path);
    EXPECT_EQ(report["containers"], 3u);
    EXPECT_EQ(report["lines"], lines);
    EXPECT_EQ(report["lines"], 1503u);
    EXPECT_EQ(report["bytes"], bytes.size());
    EXPECT_EQ(report["sha256"], sha256(bytes));
}

std::vector<std::string> dirNames(const std::string &dir) {
    std::vector<std::string> names;
    for (auto &e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace

TEST(Export, TarHoldsEachStreamAndAManifestThatChecksIt) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "tar";
    o.output = tmp.path() + "/out.tar";
    o.quiet = true;
    json report = exportLogs(sources, o);
    EXPECT_EQ(report["format"], "tar");
    checkArchive(o.output, sources, report);
    EXPECT_EQ(dirNames(tmp.path()), (std::vector<std::string>{"logs", "out.tar"}));
}

TEST(Export, TarGzReadsBackTheSame) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "tar.gz";
    o.output = tmp.path() + "/out.tar.gz";
    o.quiet = true;
    json report = exportLogs(sources, o);
    std::string bytes = slurp(o.output);
    ASSERT_GT(bytes.size(), 2u);
    EXPECT_EQ(uint8_t(bytes[0]), 0x1f);
    EXPECT_EQ(uint8_t(bytes[1]), 0x8b);
    checkArchive(o.output, sources, report);

    // An existing file is replaced whole.
    o.format = "tar";
    exportLogs(sources, o);
    EXPECT_NE(uint8_t(slurp(o.output)[0]), 0x1f);
}

TEST(Export, TimeFiltersTakeWholeLines) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "tar";
    o.output = tmp.path() + "/out.tar";
    o.quiet = true;
    // The cut line starts at 2000 s, its continuation is at 2001 s: both or neither.
    o.since = kBase + 100 * kSecond;
    o.until = kBase + 2000 * kSecond;
    json report = exportLogs({sources[0]}, o);
    auto entries = readArchive(o.output);
    ASSERT_EQ(entries.size(), 3u);
    EXPECT_EQ(entries[0].data, expectedCri(sources[0].dir, RecordType::out, o.since, o.until));
    EXPECT_EQ(entries[1].data, expectedCri(sources[0].dir, RecordType::err, o.since, o.until));
    EXPECT_NE(entries[0].data.find(" F and continued\n"), std::string::npos);
    EXPECT_EQ(entries[0].data.find("request 99\n"), std::string::npos);
    EXPECT_EQ(entries[1].data.find("bin"), std::string::npos);
    json manifest = json::parse(entries[2].data);
    EXPECT_EQ(manifest["filters"]["since"], formatTime(o.since));
    EXPECT_EQ(manifest["filters"]["until"], formatTime(o.until));
    EXPECT_EQ(report["lines"], countLines(entries[0].data) + countLines(entries[1].data));
}

TEST(Export, JsonlIsOneLineJsonPerRecord) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "jsonl";
    o.output = tmp.path() + "/out.jsonl";
    o.quiet = true;
    json report = exportLogs(sources, o);
    std::string text = slurp(o.output);
    EXPECT_EQ(countLines(text), 1503u);
    EXPECT_EQ(report["lines"], 1503u);
    EXPECT_EQ(report["bytes"], text.size());
    EXPECT_EQ(report["sha256"], sha256(text));

    std::string expected;
    for (const ExportSource &s : sources) {
        JournalReader reader(s.dir);
        while (auto r = reader.next())
            if (r->isLine()) expected += lineJson(*r, s.containerId, s.name).dump() + "\n";
    }
    EXPECT_EQ(text, expected);
    std::istringstream in(text);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(json::parse(line)["container"], "0123456789abcdef0123");
}

TEST(Export, ToStdout) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    int memfd = ::memfd_create("stdout", MFD_CLOEXEC);
    ::fflush(stdout);
    int saved = ::dup(STDOUT_FILENO);
    ::dup2(memfd, STDOUT_FILENO);
    ExportOptions o;
    o.format = "jsonl";
    o.output = "-";
    o.quiet = true;
    json report;
    EXPECT_NO_THROW(report = exportLogs(sources, o));
    ::dup2(saved, STDOUT_FILENO);
    ::close(saved);
    EXPECT_EQ(report["output"], "-");
    off_t size = ::lseek(memfd, 0, SEEK_END);
    EXPECT_EQ(report["bytes"], uint64_t(size));
    ::close(memfd);
}

TEST(Export, FailureLeavesNoFile) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "tar";
    o.quiet = true;

    o.output = tmp.path() + "/missing/out.tar";
    try {
        exportLogs(sources, o);
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), -ENOENT);
        EXPECT_NE(std::string(e.what()).find("`" + o.output + "`"), std::string::npos) << e.what();
    }

    // The archive is written, then cannot take the place of a directory.
    fs::create_directory(tmp.path() + "/taken");
    o.output = tmp.path() + "/taken";
    for (const char *format : {"tar", "tar.gz", "jsonl"}) {
        o.format = format;
        EXPECT_THROW(exportLogs(sources, o), Error) << format;
    }
    EXPECT_EQ(dirNames(tmp.path()), (std::vector<std::string>{"logs", "taken"}));
    EXPECT_TRUE(fs::is_empty(tmp.path() + "/taken"));
}

TEST(Export, UnknownFormatIsRefusedBeforeAnythingIsWritten) {
    TempDir tmp;
    auto sources = makeSources(tmp);
    ExportOptions o;
    o.format = "zip";
    o.output = tmp.path() + "/out.zip";
    try {
        exportLogs(sources, o);
        FAIL();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_STREQ(e.what(), "unknown export format `zip`: use tar, tar.gz or jsonl");
    }
    EXPECT_FALSE(fs::exists(o.output));
}

// Rates for the record, not asserted.
TEST(ExportPerformance, MillionLines) {
    TempDir tmp;
    ExportSource source{tmp.path() + "/c", "0123456789abcdef", "bench"};
    constexpr int kLines = 1'000'000;
    {
        JournalWriter w(source.dir, Retention{});
        char line[64];
        for (int i = 0; i < kLines; ++i) {
            int n = std::snprintf(line, sizeof line, "line %07d some typical log text here", i);
            w.add(i % 10 == 9 ? RecordType::err : RecordType::out, 0, kBase + i,
                  std::string_view(line, size_t(n)));
            if (i % 1000 == 999) w.commit();
        }
        w.finish();
    }
    std::string rates;
    for (const char *format : {"tar", "tar.gz", "jsonl"}) {
        ExportOptions o;
        o.format = format;
        o.output = tmp.path() + "/out." + format;
        o.quiet = true;
        auto t0 = std::chrono::steady_clock::now();
        json report = exportLogs({source}, o);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(report["lines"], uint64_t(kLines));
        rates += std::string(" ") + format + " " + std::to_string(uint64_t(kLines / s)) +
                 " lines/s (" + std::to_string(report["bytes"].get<uint64_t>() >> 20) + " MiB);";
    }
    std::cout << "[ rates    ] export 1M lines:" << rates << "\n";
}
