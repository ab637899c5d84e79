#include "Capture.h"
#include "Index.h"

#include "TestUtil.h"

#include <mobileops/common/Errors.h>
#include <mobileops/services.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

using namespace mobileops::logcollector;
using mobileops::common::Error;
using mobileops::common::Host;
using mobileops::test::TempDir;

namespace {

const Host noHost(nullptr, nullptr);

CaptureOptions plain(size_t maxLine = 16 * 1024) {
    CaptureOptions o;
    o.containerId = "c0ffee";
    o.index = false;
    o.maxLine = maxLine;
    return o;
}

struct Line {
    RecordType type;
    uint8_t flags;
    int64_t time;
    std::string data;
};

std::vector<Line> readLines(const std::string &dir, std::vector<Line> *other = nullptr) {
    JournalReader reader(dir);
    std::vector<Line> out;
    while (auto r = reader.next()) {
        Line l{r->type, r->flags, r->time, std::string(r->data)};
        if (r->isLine())
            out.push_back(std::move(l));
        else if (other)
            other->push_back(std::move(l));
    }
    return out;
}

// Feeds `text` to the capture in chunks of random sizes (1 to maxChunk bytes).
void feed(Capture &capture, int stream, const std::string &text, size_t maxChunk,
          std::mt19937 &rng) {
    for (size_t at = 0; at < text.size();) {
        size_t n = std::min(text.size() - at, 1 + rng() % maxChunk);
        capture.write(stream, 0, text.data() + at, n);
        at += n;
    }
}

uint64_t fnv(uint64_t h, std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return (h ^ 0xff) * 1099511628211ull; // the line boundary counts too
}

// The host table the core would give the plugin, with just what Capture uses: log,
// buffers and the cgroup service lookup.
struct StandInHost {
    static inline std::vector<std::string> logged;
    static inline std::atomic<int> statsCalls = 0;
    static inline std::atomic<bool> statsFail = false;

    mo_host_api api{};
    mo_cgroup_service cgroup{};
    Host host{&api, nullptr};

    StandInHost() {
        logged.clear();
        statsCalls = 0;
        statsFail = false;
        api.size = sizeof api;
        api.log = [](mo_plugin *, int level, const char *message) {
            logged.push_back(std::to_string(level) + " " + message);
        };
        api.buffer_set = [](mo_buffer *buf, const char *data, size_t len) {
            std::free(buf->data);
            buf->data = static_cast<char *>(std::malloc(len + 1));
            std::memcpy(buf->data, data, len);
            buf->data[len] = 0;
            buf->len = len;
            return 0;
        };
        api.buffer_free = [](mo_buffer *buf) {
            std::free(buf->data);
            buf->data = nullptr;
            buf->len = 0;
        };
        api.service_lookup = [](mo_plugin *, uint32_t kind, const char *,
                                mo_error *) -> const void * {
            return kind == MO_SERVICE_CGROUP ? &instance->cgroup : nullptr;
        };
        cgroup.size = sizeof cgroup;
        cgroup.self = this;
        cgroup.stats = [](void *self, const char *path, mo_buffer *out, mo_error *err) {
            ++statsCalls;
            if (statsFail) {
                std::snprintf(err->message, sizeof err->message, "cgroup `%s` is gone", path);
                return int(MO_E_NOT_FOUND);
            }
            std::string json = "{\"cpu\":{\"usage_usec\":" + std::to_string(statsCalls) +
                               "},\"memory\":{\"current\":4096},\"path\":\"" + path + "\"}";
            return static_cast<StandInHost *>(self)->api.buffer_set(out, json.data(), json.size());
        };
        instance = this;
    }
    ~StandInHost() { instance = nullptr; }
    static inline StandInHost *instance = nullptr;
};

} // namespace

TEST(Capture, MillionLinesInArbitraryChunksAreStoredOnceInOrder) {
    TempDir tmp;
    constexpr uint64_t kLines = 1'000'000;
    std::string text;
    text.reserve(kLines * 11);
    uint64_t sum = 14695981039346656037ull;
    char line[16];
    for (uint64_t i = 0; i < kLines; ++i) {
        std::snprintf(line, sizeof line, "%010llu", static_cast<unsigned long long>(i * 7));
        sum = fnv(sum, std::string_view(line, 10));
        text.append(line, 10);
        text.push_back('\n');
    }
    std::mt19937 rng(7);
    auto t0 = std::chrono::steady_clock::now();
    {
        Capture capture(noHost, tmp.path(), plain());
        feed(capture, 1, text, 65536, rng);
        capture.close();
    }
    auto t1 = std::chrono::steady_clock::now();
    JournalReader reader(tmp.path());
    uint64_t n = 0, got = 14695981039346656037ull, partials = 0;
    while (auto r = reader.next()) {
        if (!r->isLine()) continue;
        partials += r->partial();
        got = fnv(got, r->data);
        ++n;
    }
    auto t2 = std::chrono::steady_clock::now();
    EXPECT_EQ(n, kLines);
    EXPECT_EQ(partials, 0u);
    EXPECT_EQ(got, sum);
    double ws = std::chrono::duration<double>(t1 - t0).count();
    double rs = std::chrono::duration<double>(t2 - t1).count();
    std::printf("[ perf     ] capture %.0f lines/s %.1f MB/s of output; read back %.0f "
                "records/s\n",
                kLines / ws, double(text.size()) / 1e6 / ws, kLines / rs);
}

TEST(Capture, InterleavedStreamsKeepTheirOwnOrder) {
    TempDir tmp;
    std::string out, err;
    for (int i = 0; i < 20'000; ++i) {
        out += "out " + std::to_string(i) + std::string(size_t(i % 13), '.') + "\n";
        err += "err " + std::to_string(i) + "\n";
    }
    std::mt19937 rng(3);
    {
        Capture capture(noHost, tmp.path(), plain());
        size_t o = 0, e = 0;
        while (o < out.size() || e < err.size()) {
            bool toOut = e == err.size() || (o < out.size() && rng() % 2);
            std::string &s = toOut ? out : err;
            size_t &at = toOut ? o : e;
            size_t n = std::min(s.size() - at, size_t(1 + rng() % 300));
            capture.write(toOut ? 1 : 2, 0, s.data() + at, n);
            at += n;
        }
        capture.close();
    }
    std::string gotOut, gotErr;
    for (const Line &l : readLines(tmp.path())) {
        EXPECT_EQ(l.flags, 0);
        (l.type == RecordType::out ? gotOut : gotErr) += l.data + "\n";
    }
    EXPECT_EQ(gotOut, out);
    EXPECT_EQ(gotErr, err);
}

TEST(Capture, LongLinesAreSplitTheSameWhateverTheChunks) {
    const std::string a(350, 'a'), b(100, 'b'), c(200, 'c');
    const std::string text = a + "\n" + b + "\n" + c + "\n\n";
    for (size_t chunk : {size_t(1), size_t(7), size_t(100), size_t(101), text.size()}) {
        TempDir tmp;
        {
            Capture capture(noHost, tmp.path(), plain(100));
            for (size_t at = 0; at < text.size(); at += chunk)
                capture.write(2, 1000, text.data() + at, std::min(chunk, text.size() - at));
            capture.close();
        }
        std::vector<Line> lines = readLines(tmp.path());
        ASSERT_EQ(lines.size(), 8u) << "chunk " << chunk;
        const std::vector<std::pair<std::string, uint8_t>> want = {{a.substr(0, 100), kPartial},
                                                                   {a.substr(100, 100), kPartial},
                                                                   {a.substr(200, 100), kPartial},
                                                                   {a.substr(300), 0},
                                                                   {b, 0},
                                                                   {c.substr(0, 100), kPartial},
                                                                   {c.substr(100), 0},
                                                                   {"", 0}};
        for (size_t i = 0; i < want.size(); ++i) {
            EXPECT_EQ(lines[i].data, want[i].first) << "chunk " << chunk << " record " << i;
            EXPECT_EQ(lines[i].flags, want[i].second) << "chunk " << chunk << " record " << i;
            EXPECT_EQ(lines[i].type, RecordType::err);
        }
    }
}

TEST(Capture, HeldLinesGoOutOnFlushAndClose) {
    TempDir tmp;
    {
        Capture capture(noHost, tmp.path(), plain());
        capture.write(1, 100, "abc", 3);
        capture.write(2, 150, "one\ntw", 6);
        capture.write(1, 200, "de", 2);
        capture.flush();
        capture.write(1, 300, "f\n", 2);
        capture.write(2, 400, "o\nthree", 7);
        capture.close();
        capture.close(); // idempotent
        try {
            capture.write(1, 0, "late\n", 5);
            FAIL() << "write after close";
        } catch (const Error &e) {
            EXPECT_EQ(e.code(), MO_E_STATE);
            EXPECT_STREQ(e.what(), "the capture of `c0ffee` is closed");
        }
    }
    std::vector<Line> other;
    std::vector<Line> lines = readLines(tmp.path(), &other);
    ASSERT_EQ(lines.size(), 6u);
    EXPECT_EQ(lines[0].data, "one");
    EXPECT_EQ(lines[0].time, 150);
    EXPECT_EQ(lines[1].data, "abcde"); // flushed: partial, with the time of its first byte
    EXPECT_EQ(lines[1].flags, kPartial);
    EXPECT_EQ(lines[1].time, 100);
    EXPECT_EQ(lines[2].data, "tw");
    EXPECT_EQ(lines[2].type, RecordType::err);
    EXPECT_EQ(lines[2].flags, kPartial);
    EXPECT_EQ(lines[2].time, 150);
    EXPECT_EQ(lines[3].data, "f");
    EXPECT_EQ(lines[3].flags, 0);
    EXPECT_EQ(lines[3].time, 300);
    EXPECT_EQ(lines[4].data, "o");
    EXPECT_EQ(lines[4].time, 400);
    EXPECT_EQ(lines[5].data, "three"); // held at close
    EXPECT_EQ(lines[5].flags, kPartial);
    ASSERT_EQ(other.size(), 2u);
    EXPECT_EQ(other[0].type, RecordType::start);
    EXPECT_EQ(other[1].type, RecordType::end);
    EXPECT_EQ(other[1].data, "{}");
}

TEST(Capture, BadArgumentsAreNamed) {
    TempDir tmp;
    try {
        Capture capture(noHost, tmp.path(), plain(0));
        FAIL() << "maxLine 0 accepted";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_STREQ(e.what(), "invalid maxLine `0`: expected 1 to 1048576 bytes");
    }
    Capture capture(noHost, tmp.path(), plain());
    try {
        capture.write(3, 0, "x\n", 2);
        FAIL() << "stream 3 accepted";
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_STREQ(e.what(), "invalid stream `3`: expected 1 (stdout) or 2 (stderr)");
    }
    capture.write(1, 0, "", 0);
    capture.close();
    EXPECT_TRUE(readLines(tmp.path()).empty());
}

TEST(Capture, TheThreadIndexesEverythingBeforeCloseReturns) {
    TempDir tmp;
    CaptureOptions options = plain();
    options.index = true;
    uint64_t end;
    {
        Capture capture(noHost, tmp.path(), options);
        std::string chunk;
        for (int i = 0; i < 30'000; ++i) {
            chunk += i == 12'345 ? "a needle in the haystack\n" : "hay " + std::to_string(i) + "\n";
            if (chunk.size() > 4000) {
                capture.write(i % 2 ? 1 : 2, 0, chunk.data(), chunk.size());
                chunk.clear();
            }
        }
        capture.write(1, 0, chunk.data(), chunk.size());
        capture.write(1, 0, "unterminated", 12);
        capture.close();
        end = capture.end();
    }
    Index index(tmp.path());
    EXPECT_EQ(index.indexedTo(), end);
    JournalReader reader(tmp.path());
    SearchQuery query;
    query.pattern = "needle";
    bool more = true;
    std::vector<Hit> hits = index.search(reader, query, &more);
    ASSERT_EQ(hits.size(), 1u);
    EXPECT_EQ(hits[0].line, "a needle in the haystack");
    EXPECT_FALSE(more);
    query.pattern = "unterminated";
    EXPECT_EQ(index.search(reader, query, &more).size(), 1u);
}

TEST(Capture, SamplesTheCgroupAndWarnsOnceWhenItGoes) {
    TempDir tmp;
    StandInHost stand;
    CaptureOptions options = plain();
    options.index = true;
    options.cgroup = "mobileops/c0ffee";
    options.sampleInterval = 20'000'000; // 20 ms
    {
        Capture capture(stand.host, tmp.path(), options);
        capture.write(1, 0, "hello\n", 6);
        for (int i = 0; i < 500 && StandInHost::statsCalls < 3; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        StandInHost::statsFail = true;
        int calls = StandInHost::statsCalls;
        for (int i = 0; i < 500 && StandInHost::statsCalls == calls; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(100)); // no more calls come
        capture.write(1, 0, "still captured\n", 15);
        capture.close();
    }
    int good = StandInHost::statsCalls - 1;
    ASSERT_GE(good, 3);
    Index index(tmp.path());
    std::vector<Sample> samples = index.samples();
    ASSERT_EQ(samples.size(), size_t(good));
    EXPECT_EQ(samples[0].stats["path"], "mobileops/c0ffee");
    EXPECT_EQ(samples[0].stats["cpu"]["usage_usec"], 1);
    for (size_t i = 1; i < samples.size(); ++i) EXPECT_GE(samples[i].time, samples[i - 1].time);
    ASSERT_EQ(StandInHost::logged.size(), 1u);
    EXPECT_EQ(StandInHost::logged[0], "1 log of `c0ffee`: cgroup samples stop: "
                                      "`mobileops/c0ffee`: cgroup `mobileops/c0ffee` is gone");
    EXPECT_EQ(readLines(tmp.path()).size(), 2u);
}

TEST(Capture, AnIndexThatCannotOpenDoesNotStopTheCapture) {
    TempDir tmp;
    std::filesystem::create_directories(tmp.path() + "/index.db"); // not a database
    StandInHost stand;
    CaptureOptions options = plain();
    options.index = true;
    {
        Capture capture(stand.host, tmp.path(), options);
        for (int i = 0; i < 100; ++i) capture.write(1, 0, "line\n", 5);
        capture.close();
    }
    EXPECT_EQ(readLines(tmp.path()).size(), 100u);
    ASSERT_EQ(StandInHost::logged.size(), 1u);
    EXPECT_NE(StandInHost::logged[0].find("1 log of `c0ffee`: indexing stops: "), std::string::npos)
        << StandInHost::logged[0];
}

TEST(Capture, NoDescriptorOfTheLogReachesTheContainer) {
    TempDir tmp;
    CaptureOptions options = plain();
    options.index = true;
    Capture capture(noHost, tmp.path(), options);
    capture.write(1, 0, "x\n", 2);
    JournalReader reader(tmp.path());
    ASSERT_TRUE(reader.next());
    ASSERT_TRUE(reader.at(0));
    for (int i = 0; i < 200 && !std::filesystem::exists(tmp.path() + "/index.db"); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    int ours = 0;
    DIR *d = ::opendir("/proc/self/fd");
    ASSERT_TRUE(d);
    while (dirent *e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        int fd = std::atoi(e->d_name);
        char target[4096] = {};
        if (::readlink(("/proc/self/fd/" + std::string(e->d_name)).c_str(), target,
                       sizeof target - 1) <= 0)
            continue;
        if (std::string(target).rfind(tmp.path() + "/", 0) != 0) continue;
        ++ours;
        EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC) << target;
    }
    ::closedir(d);
    EXPECT_GE(ours, 4); // writer.lock, the segment, the reader's two
    capture.close();
}
