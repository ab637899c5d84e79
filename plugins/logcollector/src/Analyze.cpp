#include "Analyze.h"

#include "Index.h"
#include "Journal.h"
#include "Query.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

namespace mobileops::logcollector {

using json = nlohmann::json;

namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr size_t kMaxLineText = 4096; // of a split line, what the error scan looks at
constexpr size_t kMaxPattern = 200;
constexpr size_t kMaxExample = 300;

const char *streamName(int stream) { return stream == 2 ? "stderr" : "stdout"; }

json timeOrNull(int64_t ns) { return ns ? json(formatTime(ns)) : json(nullptr); }

double round1(double v) { return std::round(v * 10) / 10; }

bool alnum(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool digit(char c) { return c >= '0' && c <= '9'; }
bool hex(char c) { return digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool lowerAscii(char c) { return c >= 'a' && c <= 'z'; }

// A logical line: a line split into partial records comes as one, its pieces joined (text
// up to maxText), time and stream of its first piece.
struct Line {
    int stream = 1;
    int64_t time = 0;
    std::string_view text;
    uint64_t bytes = 0;
    bool split = false;
};

template <class F> void forEachLine(const std::string &dir, size_t maxText, F &&f) {
    JournalReader reader(dir);
    reader.seek(0);
    struct Open {
        bool open = false;
        std::string text;
        Line line;
    } open[3];
    auto finish = [&](int s) {
        if (!open[s].open) return;
        open[s].open = false;
        open[s].line.text = open[s].text;
        f(open[s].line);
    };
    while (auto record = reader.next()) {
        if (!record->isLine()) {
            finish(1); // a run's end ends what its lines left open
            finish(2);
            continue;
        }
        int s = static_cast<int>(record->type);
        Open &o = open[s];
        if (!o.open && !record->partial()) {
            f(Line{s, record->time, record->data, record->data.size(), false});
            continue;
        }
        if (!o.open) {
            o.open = true;
            o.text.clear();
            o.line = Line{s, record->time, {}, 0, true};
        }
        o.line.bytes += record->data.size();
        if (o.text.size() < maxText) o.text.append(record->data.substr(0, maxText - o.text.size()));
        if (!record->partial()) finish(s);
    }
    finish(1);
    finish(2);
}

json identity(const AnalyzeSource &source) {
    return {{"id", source.containerId}, {"name", source.name}};
}

// performance

json performance(const AnalyzeSource &source) {
    uint64_t lines[3] = {0, 0, 0}, bytes[3] = {0, 0, 0}, split = 0, longest = 0;
    int64_t first = 0, last = 0;
    std::vector<std::pair<int64_t, uint64_t>> seconds; // runs of one second, then merged
    forEachLine(source.dir, 0, [&](const Line &line) {
        lines[line.stream]++;
        bytes[line.stream] += line.bytes;
        split += line.split;
        longest = std::max(longest, line.bytes);
        if (!line.time) return;
        if (!first || line.time < first) first = line.time;
        last = std::max(last, line.time);
        int64_t second = line.time / kSecond;
        if (!seconds.empty() && seconds.back().first == second)
            seconds.back().second++;
        else
            seconds.emplace_back(second, 1);
    });
    std::stable_sort(seconds.begin(), seconds.end(),
                     [](const auto &a, const auto &b) { return a.first < b.first; });
    std::vector<std::pair<int64_t, uint64_t>> merged;
    for (const auto &bucket : seconds) {
        if (!merged.empty() && merged.back().first == bucket.first)
            merged.back().second += bucket.second;
        else
            merged.push_back(bucket);
    }
    uint64_t total = lines[1] + lines[2];
    json rate = {{"avg", 0}, {"peak", 0}, {"peak_at", nullptr}};
    json busiest = json::array();
    if (!merged.empty()) {
        // Over the seconds the lines span, so the average never exceeds the peak.
        double span = static_cast<double>(merged.back().first - merged.front().first + 1);
        auto peak =
            std::max_element(merged.begin(), merged.end(),
                             [](const auto &a, const auto &b) { return a.second < b.second; });
        rate = {{"avg", round1(static_cast<double>(total) / span)},
                {"peak", peak->second},
                {"peak_at", formatTime(peak->first * kSecond)}};
        std::vector<std::pair<int64_t, uint64_t>> minutes;
        for (const auto &[second, count] : merged) {
            int64_t minute = second >= 0 ? second / 60 : (second - 59) / 60;
            if (!minutes.empty() && minutes.back().first == minute)
                minutes.back().second += count;
            else
                minutes.emplace_back(minute, count);
        }
        std::stable_sort(minutes.begin(), minutes.end(),
                         [](const auto &a, const auto &b) { return a.second > b.second; });
        for (size_t i = 0; i < minutes.size() && i < 5; ++i)
            busiest.push_back({{"minute", formatTime(minutes[i].first * 60 * kSecond)},
                               {"lines", minutes[i].second}});
    }
    json out = identity(source);
    out["lines"] = total;
    out["bytes"] = bytes[1] + bytes[2];
    out["streams"] = {{"stdout", {{"lines", lines[1]}, {"bytes", bytes[1]}}},
                      {"stderr", {{"lines", lines[2]}, {"bytes", bytes[2]}}}};
    out["first"] = timeOrNull(first);
    out["last"] = timeOrNull(last);
    out["duration_s"] = first ? round1(static_cast<double>(last - first) / kSecond) : 0.0;
    out["rate"] = rate;
    out["busiest"] = busiest;
    out["partial"] = split;
    out["line_length"] = {{"avg", total ? round1(static_cast<double>(bytes[1] + bytes[2]) /
                                                 static_cast<double>(total))
                                        : 0.0},
                          {"max", longest}};
    return out;
}

// errors

enum class Level { none, warning, error };

bool is(std::string_view word, std::initializer_list<std::string_view> words) {
    return std::find(words.begin(), words.end(), word) != words.end();
}

// Whole words, any case, read from `lowered` (the line in ASCII lower case); `line` tells
// a type name's camel case ("ValueError", "IOException") from an ordinary word ("terror").
Level classify(std::string_view line, std::string_view lowered) {
    Level level = Level::none;
    size_t n = lowered.size();
    for (size_t i = 0; i < n;) {
        if (!alnum(lowered[i])) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < n && alnum(lowered[j])) ++j;
        std::string_view word = lowered.substr(i, j - i);
        std::string_view rest = lowered.substr(j);
        auto followedBy = [&](std::string_view words) {
            return rest.starts_with(words) &&
                   (rest.size() == words.size() || !alnum(rest[words.size()]));
        };
        if (is(word, {"fatal", "panic", "panicked", "error", "err", "exception", "traceback",
                      "failed", "failure", "denied", "refused", "segfault", "oom", "critical"}) ||
            (word == "out" && followedBy(" of memory")))
            return Level::error;
        for (std::string_view suffix : {std::string_view("error"), std::string_view("exception")})
            if (word.size() > suffix.size() && word.ends_with(suffix) &&
                line[j - suffix.size()] == suffix[0] - 'a' + 'A' &&
                lowerAscii(line[j - suffix.size() - 1]))
                return Level::error;
        if (is(word, {"warn", "warning", "deprecated", "timeout", "retry", "retrying"}) ||
            (word == "timed" && followedBy(" out")))
            level = Level::warning;
        i = j;
    }
    return level;
}

// At most `max` bytes, not ending in the middle of a UTF-8 character.
void cut(std::string &s, size_t max) {
    if (s.size() <= max) return;
    size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s.resize(n);
}

// The end of a date and/or time starting at s[i] ("2026-11-23", "05:12:33.5",
// "2026-11-23T05:12:33Z", "2026-11-23 05:12:33+01:00"), or i when there is none.
size_t timeEnd(std::string_view s, size_t i) {
    auto digits = [&](size_t at, size_t count) {
        if (at + count > s.size()) return false;
        for (size_t k = 0; k < count; ++k)
            if (!digit(s[at + k])) return false;
        return true;
    };
    auto clock = [&](size_t at) -> size_t {
        size_t h = digits(at, 2) ? 2 : digits(at, 1) ? 1 : 0;
        if (!h || at + h >= s.size() || s[at + h] != ':' || !digits(at + h + 1, 2)) return at;
        size_t e = at + h + 3;
        if (e < s.size() && s[e] == ':' && digits(e + 1, 2)) e += 3;
        if (e < s.size() && (s[e] == '.' || s[e] == ',') && digits(e + 1, 1)) {
            ++e;
            while (e < s.size() && digit(s[e])) ++e;
        }
        if (e < s.size() && s[e] == 'Z') return e + 1;
        if (e < s.size() && (s[e] == '+' || s[e] == '-') && digits(e + 1, 2)) {
            size_t z = e + 3;
            if (z < s.size() && s[z] == ':') ++z;
            if (digits(z, 2)) return z + 2;
        }
        return e;
    };
    if (digits(i, 4) && i + 4 < s.size() && s[i + 4] == '-' && digits(i + 5, 2) &&
        i + 7 < s.size() && s[i + 7] == '-' && digits(i + 8, 2)) {
        size_t e = i + 10;
        if (e < s.size() && (s[e] == 'T' || s[e] == ' ')) {
            size_t t = clock(e + 1);
            if (t > e + 1) return t;
        }
        return e;
    }
    return clock(i);
}

bool pathLead(char c) {
    return c == ' ' || c == '\t' || c == '=' || c == '(' || c == '[' || c == '<' || c == ',' ||
           c == ':' || c == ';';
}
bool pathEnd(char c) {
    return c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '`' || c == ',' || c == ';' ||
           c == ':' || c == ')' || c == ']' || c == '}' || c == '>';
}

// The line with what differs between occurrences of one message folded: times -> T,
// quoted strings -> "*", absolute paths -> /PATH, hex ids of 8+ digits (0x..., UUIDs,
// hashes) -> X, numbers -> N.
std::string fold(std::string_view line) {
    std::string_view s = line.substr(0, 1024);
    std::string out;
    out.reserve(s.size());
    size_t n = s.size();
    for (size_t i = 0; i < n && out.size() <= kMaxPattern;) {
        char c = s[i];
        bool boundary = i == 0 || !alnum(s[i - 1]);
        if ((c == '"' || c == '\'') && boundary) {
            size_t close = s.find(c, i + 1);
            if (close != std::string_view::npos) {
                out += "\"*\"";
                i = close + 1;
                continue;
            }
        }
        if (c == '/' && (i == 0 || pathLead(s[i - 1])) && i + 1 < n && s[i + 1] != '/' &&
            !pathEnd(s[i + 1])) {
            size_t e = i + 1;
            while (e < n && !pathEnd(s[e])) ++e;
            out += "/PATH";
            i = e;
            continue;
        }
        if (digit(c) && boundary) {
            size_t e = timeEnd(s, i);
            if (e > i && (e == n || !alnum(s[e]))) {
                out += 'T';
                i = e;
                continue;
            }
        }
        if (hex(c) && boundary) {
            size_t e = i, hexDigits = 0;
            bool decimal = false, letter = false, dash = false, prefixed = false;
            if (c == '0' && i + 2 < n && (s[i + 1] == 'x' || s[i + 1] == 'X') && hex(s[i + 2])) {
                prefixed = true;
                e = i + 2;
            }
            while (e < n) {
                if (hex(s[e])) {
                    ++hexDigits;
                    (digit(s[e]) ? decimal : letter) = true;
                    ++e;
                } else if (s[e] == '-' && !prefixed && e + 1 < n && hex(s[e + 1])) {
                    dash = true;
                    ++e;
                } else {
                    break;
                }
            }
            bool whole = e == n || !alnum(s[e]);
            if (whole && hexDigits >= 8 && (prefixed || (decimal && (letter || dash)))) {
                out += 'X';
                i = e;
                continue;
            }
            if (whole && prefixed) {
                out += 'N';
                i = e;
                continue;
            }
        }
        if (digit(c)) {
            while (i < n && digit(s[i])) ++i;
            out += 'N';
            continue;
        }
        out += c;
        ++i;
    }
    cut(out, kMaxPattern);
    return out;
}

std::string example(std::string_view line) {
    std::string out(line.substr(0, kMaxExample + 4));
    cut(out, kMaxExample);
    return out;
}

struct Pattern {
    Level level;
    std::string pattern, example;
    uint64_t count = 0;
    int64_t first = 0, last = 0;
    unsigned streams = 0; // bit 1 stdout, bit 2 stderr
};

json errors(const AnalyzeSource &source) {
    uint64_t lines = 0, errorLines = 0, warningLines = 0;
    std::unordered_map<std::string, Pattern> patterns;
    std::string lowered, key;
    forEachLine(source.dir, kMaxLineText, [&](const Line &line) {
        ++lines;
        lowered.resize(line.text.size());
        std::transform(line.text.begin(), line.text.end(), lowered.begin(), [](char c) {
            return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
        });
        Level level = classify(line.text, lowered);
        if (level == Level::none) return;
        (level == Level::error ? errorLines : warningLines)++;
        // Grouped regardless of case ("ERROR:" and "error:" are one message); shown as the
        // first occurrence had it.
        std::string folded = fold(line.text);
        key.assign(1, level == Level::error ? 'E' : 'W');
        key += folded;
        std::transform(key.begin() + 1, key.end(), key.begin() + 1, [](char c) {
            return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
        });
        auto it = patterns.find(key);
        if (it == patterns.end())
            it = patterns.emplace(key, Pattern{level, std::move(folded), example(line.text)}).first;
        Pattern &p = it->second;
        p.count++;
        if (!p.first || line.time < p.first) p.first = line.time;
        p.last = std::max(p.last, line.time);
        p.streams |= 1u << (line.stream - 1);
    });
    std::vector<const Pattern *> top;
    for (const auto &entry : patterns) top.push_back(&entry.second);
    std::sort(top.begin(), top.end(), [](const Pattern *a, const Pattern *b) {
        return a->count != b->count ? a->count > b->count : a->first < b->first;
    });
    if (top.size() > 20) top.resize(20);
    json list = json::array();
    for (const Pattern *p : top)
        list.push_back(
            {{"level", p->level == Level::error ? "error" : "warning"},
             {"pattern", p->pattern},
             {"count", p->count},
             {"first", timeOrNull(p->first)},
             {"last", timeOrNull(p->last)},
             {"example", p->example},
             {"stream", p->streams == 3 ? "both" : streamName(p->streams == 2 ? 2 : 1)}});
    json out = identity(source);
    out["lines"] = lines;
    out["error_lines"] = errorLines;
    out["warning_lines"] = warningLines;
    out["patterns"] = list;
    return out;
}

// resources

std::optional<double> number(const json &stats, const char *group, const char *key) {
    auto g = stats.find(group);
    if (g == stats.end() || !g->is_object()) return std::nullopt;
    auto v = g->find(key);
    if (v == g->end() || !v->is_number()) return std::nullopt;
    return v->get<double>();
}

std::optional<double> usage(const Sample &s) { return number(s.stats, "cpu", "usage_ns"); }

// CPU between two samples in percent of one CPU; nothing when either lacks the usage or
// the counter went back (the cgroup was made again).
std::optional<double> cpuPercent(const Sample &a, const Sample &b) {
    auto ua = usage(a), ub = usage(b);
    if (!ua || !ub || *ub < *ua || b.time <= a.time) return std::nullopt;
    return (*ub - *ua) * 100.0 / static_cast<double>(b.time - a.time);
}

json resources(const AnalyzeSource &source) {
    json out = identity(source);
    std::vector<Sample> samples;
    struct stat st {};
    if (::stat(source.dir.c_str(), &st) == 0) samples = Index(source.dir).samples();
    out["samples"] = samples.size();
    if (samples.empty()) {
        out["note"] = "no resource samples: no cgroup service, or the container ran for less "
                      "than the sampling interval";
        return out;
    }
    out["interval_s"] =
        samples.size() > 1
            ? round1(static_cast<double>(samples.back().time - samples.front().time) /
                     static_cast<double>(samples.size() - 1) / kSecond)
            : 0.0;

    double cpuUsed = 0, cpuTime = 0, cpuMax = 0;
    bool cpuAny = false;
    for (size_t i = 1; i < samples.size(); ++i)
        if (auto p = cpuPercent(samples[i - 1], samples[i])) {
            cpuAny = true;
            cpuMax = std::max(cpuMax, *p);
            cpuUsed += *usage(samples[i]) - *usage(samples[i - 1]);
            cpuTime += static_cast<double>(samples[i].time - samples[i - 1].time);
        }
    out["cpu"] = cpuAny ? json{{"avg_percent", round1(cpuUsed * 100.0 / cpuTime)},
                               {"max_percent", round1(cpuMax)}}
                        : json(nullptr);

    double memMin = 0, memMax = 0, memSum = 0, memLast = 0, pidsMax = 0, pidsLast = 0;
    size_t memCount = 0, pidsCount = 0;
    for (const Sample &s : samples) {
        if (auto m = number(s.stats, "memory", "current")) {
            memMin = memCount ? std::min(memMin, *m) : *m;
            memMax = std::max(memMax, *m);
            memSum += *m;
            memLast = *m;
            ++memCount;
        }
        if (auto p = number(s.stats, "pids", "current")) {
            pidsMax = std::max(pidsMax, *p);
            pidsLast = *p;
            ++pidsCount;
        }
    }
    auto integer = [](double v) { return static_cast<uint64_t>(std::llround(v)); };
    out["memory"] = memCount ? json{{"min", integer(memMin)},
                                    {"avg", integer(memSum / static_cast<double>(memCount))},
                                    {"max", integer(memMax)},
                                    {"last", integer(memLast)}}
                             : json(nullptr);
    out["pids"] =
        pidsCount ? json{{"max", integer(pidsMax)}, {"last", integer(pidsLast)}} : json(nullptr);

    // At most 20 points, evenly spaced; each point's CPU is over the span since the one
    // before it, so the series covers all the time sampled.
    size_t points = std::min<size_t>(samples.size(), 20);
    json series = json::array();
    size_t previous = 0;
    for (size_t k = 0; k < points; ++k) {
        size_t i = points == 1 ? 0 : k * (samples.size() - 1) / (points - 1);
        const Sample &s = samples[i];
        std::optional<double> cpu = k ? cpuPercent(samples[previous], s) : std::nullopt;
        auto mem = number(s.stats, "memory", "current");
        auto pids = number(s.stats, "pids", "current");
        series.push_back({{"time", formatTime(s.time)},
                          {"cpu_percent", cpu ? json(round1(*cpu)) : json(nullptr)},
                          {"memory", mem ? json(integer(*mem)) : json(nullptr)},
                          {"pids", pids ? json(integer(*pids)) : json(nullptr)}});
        previous = i;
    }
    out["series"] = series;
    return out;
}

template <class F> json each(const std::vector<AnalyzeSource> &sources, F &&f) {
    json out = json::array();
    for (const AnalyzeSource &source : sources) out.push_back(f(source));
    return out;
}

} // namespace

json analyzePerformance(const std::vector<AnalyzeSource> &sources) {
    return each(sources, performance);
}

json analyzeErrors(const std::vector<AnalyzeSource> &sources) { return each(sources, errors); }

json analyzeResources(const std::vector<AnalyzeSource> &sources) {
    return each(sources, resources);
}

} // namespace mobileops::logcollector
