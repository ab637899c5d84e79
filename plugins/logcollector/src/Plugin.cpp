// The plugin's C surface: the descriptor, the mo_log_service trampolines the runtime
// captures through, and the JSON methods the logs and events workflows call.
#include "Analyze.h"
#include "Capture.h"
#include "Export.h"
#include "Index.h"
#include "LogStore.h"
#include "Query.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Json.h>
#include <mobileops/plugin.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>

namespace mobileops::logcollector {
namespace {

using common::Error;
using common::quote;
using nlohmann::json;

std::string str(const json &a, const char *key) { return common::stringArg(a, key); }
std::vector<std::string> strings(const json &a, const char *key) {
    return common::stringsArg(a, key);
}

// A time argument: a string in parseTime's forms, or ns as a number.
int64_t timeArg(const json &a, const char *key, const char *flag, int64_t now) {
    auto it = a.find(key);
    if (it == a.end() || it->is_null()) return 0;
    if (it->is_number()) return it->get<int64_t>();
    std::string text = it->is_string() ? it->get<std::string>() : it->dump();
    return text.empty() ? 0 : parseTime(text, flag, now);
}

int streamArg(const json &a) {
    std::string s = str(a, "stream");
    if (s.empty() || s == "all") return 0;
    if (s == "stdout") return 1;
    if (s == "stderr") return 2;
    throw Error(MO_E_INVALID, "invalid --stream " + quote(s) + ": use stdout or stderr");
}

int64_t integerArg(const json &a, const char *key, const char *flag, int64_t fallback) {
    auto it = a.find(key);
    if (it == a.end() || it->is_null()) return fallback;
    if (it->is_number_integer()) return it->get<int64_t>();
    if (it->is_number()) {
        double d = it->get<double>();
        if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    if (it->is_string()) {
        const std::string s = it->get<std::string>();
        char *end = nullptr;
        long long v = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && end && *end == '\0') return v;
    }
    throw Error(MO_E_INVALID, "invalid " + std::string(flag) + " " + quote(it->dump()) +
                                  ": expected a whole number");
}

class LogPlugin : public sdk::Plugin {
public:
    void init() override {
        _hostApi = std::make_unique<common::Host>(&host(), handle());
        std::string dir = config("logcollector.dir");
        if (dir.empty()) dir = config("root_dir") + "/logs";
        _store = std::make_unique<LogStore>(*_hostApi, dir);

        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.open = &openWriter;
        _iface.write = &writeWriter;
        _iface.flush = &flushWriter;
        _iface.close = &closeWriter;
        _iface.read = &readLog;
        _iface.remove = &removeLog;
        service(MO_SERVICE_LOG, "logcollector", &_iface);
        registerMethods();
    }

    sdk::Probe probe() override { return {true, "journals under " + quote(_store->dir())}; }

private:
    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        return Plugin::guard<LogPlugin>(p, err, std::forward<Fn>(fn));
    }
    static json parse(const char *text, const char *what) {
        return common::parseArgument(text, what, true);
    }

    // --- the service

    static int openWriter(void *p, const char *id, const char *options, mo_log_writer **out,
                          mo_error *err) {
        return guard(p, err, [&](LogPlugin &s) {
            json o = parse(options, "log options");
            std::string container = id ? id : "";
            if (container.size() != 64)
                throw Error(MO_E_INVALID, "not a container id " + quote(container));
            CaptureOptions c;
            c.containerId = container;
            c.name = str(o, "name");
            c.retention = s._store->retention(str(o, "maxSize"), str(o, "maxAge"));
            c.index = o.value("index", true);
            c.cgroup = str(o, "cgroup");
            std::string interval = str(o, "sampleInterval");
            if (interval.empty()) interval = s.config("logcollector.sample_interval");
            if (!interval.empty()) c.sampleInterval = parseDuration(interval, "sample interval");
            if (o.contains("drainSeconds"))
                c.indexDrainTimeout =
                    integerArg(o, "drainSeconds", "drain seconds", 10) * 1'000'000'000;
            std::string maxLine = s.config("logcollector.max_line");
            if (!maxLine.empty()) c.maxLine = std::stoul(maxLine);
            auto capture =
                std::make_unique<Capture>(*s._hostApi, s._store->journalDir(container), c);
            *out = reinterpret_cast<mo_log_writer *>(capture.release());
        });
    }

    static Capture &capture(mo_log_writer *w) {
        if (!w) throw Error(MO_E_INVALID, "no log writer");
        return *reinterpret_cast<Capture *>(w);
    }

    static int writeWriter(void *p, mo_log_writer *w, int stream, int64_t time, const char *data,
                           size_t len, mo_error *err) {
        return guard(p, err, [&](LogPlugin &) {
            if (stream != MO_STREAM_STDOUT && stream != MO_STREAM_STDERR)
                throw Error(MO_E_INVALID, "log stream " + std::to_string(stream) +
                                              " is neither stdout nor stderr");
            capture(w).write(stream, time, data, len);
        });
    }

    static int flushWriter(void *p, mo_log_writer *w, mo_error *err) {
        return guard(p, err, [&](LogPlugin &) { capture(w).flush(); });
    }

    static int closeWriter(void *p, mo_log_writer *w, mo_error *err) {
        std::unique_ptr<Capture> owned(w ? reinterpret_cast<Capture *>(w) : nullptr);
        return guard(p, err, [&](LogPlugin &) {
            if (owned) owned->close();
        });
    }

    static int readLog(void *p, const char *id, const char *query, int outFd, int errFd,
                       mo_error *err) {
        return guard(p, err, [&](LogPlugin &s) {
            s.show(parse(query, "log query"), id ? id : "", outFd, errFd);
        });
    }

    static int removeLog(void *p, const char *id, mo_error *err) {
        return guard(p, err, [&](LogPlugin &s) { s._store->remove(id ? id : ""); });
    }

    // --- shared by the service and the methods

    void show(const json &a, const std::string &ref, int outFd, int errFd) {
        LogOwner owner = _store->resolve(ref);
        int64_t now = nowNs();
        ShowOptions o;
        o.containerId = owner.id;
        o.name = owner.name;
        o.since = timeArg(a, "since", "--since", now);
        o.until = timeArg(a, "until", "--until", now);
        o.tail = integerArg(a, "tail", "--tail", -1);
        if (o.tail < -1) throw Error(MO_E_INVALID, "invalid --tail " + std::to_string(o.tail));
        o.stream = streamArg(a);
        o.timestamps = a.value("timestamps", false);
        o.json = a.value("json", false);
        o.follow = a.value("follow", false);
        o.fromEnd = a.value("fromEnd", false);
        std::fflush(stdout);
        logcollector::show(_store->journalDir(owner.id), o, outFd, errFd);
    }

    // The containers a method works on: the named ones, or every journal.
    std::vector<LogOwner> owners(const json &a, const char *key) const {
        std::vector<std::string> refs = strings(a, key);
        std::vector<LogOwner> out;
        if (refs.empty()) return _store->all();
        for (const auto &r : refs) out.push_back(_store->resolve(r));
        return out;
    }

    json search(const json &a) {
        auto started = std::chrono::steady_clock::now();
        int64_t now = nowNs();
        SearchQuery q;
        q.pattern = str(a, "pattern");
        q.raw = a.value("raw", false);
        q.since = timeArg(a, "since", "--since", now);
        q.until = timeArg(a, "until", "--until", now);
        q.stream = streamArg(a);
        int64_t limit = integerArg(a, "limit", "--limit", 100);
        if (limit <= 0) throw Error(MO_E_INVALID, "invalid --limit " + std::to_string(limit));
        q.limit = static_cast<size_t>(limit);
        if (!q.raw) Index::ftsQuery(q.pattern); // a pattern with no words fails first
        struct Found {
            Hit hit;
            const LogOwner *owner;
        };
        std::vector<LogOwner> list = owners(a, "container");
        std::vector<Found> found;
        bool more = false;
        for (const LogOwner &o : list) {
            std::string dir = _store->journalDir(o.id);
            if (listSegments(dir).empty()) continue;
            JournalReader reader(dir);
            Index index(dir);
            index.update(reader); // what the capture's thread has not reached yet
            bool m = false;
            for (Hit &h : index.search(reader, q, &m)) found.push_back({std::move(h), &o});
            more = more || m;
        }
        std::stable_sort(found.begin(), found.end(),
                         [](const Found &x, const Found &y) { return x.hit.time < y.hit.time; });
        if (found.size() > q.limit) {
            found.erase(found.begin(), found.end() - static_cast<long>(q.limit));
            more = true;
        }
        json hits = json::array();
        for (const Found &f : found) {
            Record r;
            r.offset = f.hit.offset;
            r.type = f.hit.stream == 2 ? RecordType::err : RecordType::out;
            r.time = f.hit.time;
            r.data = f.hit.line;
            hits.push_back(lineJson(r, f.owner->id, f.owner->name));
        }
        double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                .count();
        return {{"hits", hits}, {"more", more}, {"containers", list.size()}, {"milliseconds", ms}};
    }

    // The offset of the n-th line record from the end (the oldest record when fewer).
    static uint64_t tailStart(const std::string &dir, size_t n) {
        std::vector<uint64_t> ring(n);
        size_t seen = 0;
        JournalReader reader(dir);
        reader.seek(0);
        while (auto r = reader.next())
            if (r->isLine()) ring[seen++ % n] = r->offset;
        if (seen == 0) return reader.position();
        return seen < n ? ring[0] : ring[seen % n];
    }

    json read(const json &a) {
        json cursors =
            a.contains("cursors") && a["cursors"].is_object() ? a["cursors"] : json::object();
        int64_t limit = integerArg(a, "limit", "limit", 1000);
        int64_t tail = integerArg(a, "tail", "tail", 0);
        json lines = json::array();
        for (const LogOwner &o : owners(a, "containers")) {
            std::string dir = _store->journalDir(o.id);
            uint64_t cursor = UINT64_MAX;
            if (auto c = cursors.find(o.id); c != cursors.end() && c->is_number_unsigned())
                cursor = c->get<uint64_t>();
            else if (tail > 0) {
                // The first read of a container: its last `tail` line records.
                cursor = tailStart(dir, static_cast<size_t>(tail));
                for (json &l : readSince(dir, o.id, o.name, cursor, static_cast<size_t>(tail)))
                    lines.push_back(std::move(l));
                cursors[o.id] = cursor;
                continue;
            }
            for (json &l : readSince(dir, o.id, o.name, cursor, static_cast<size_t>(limit)))
                lines.push_back(std::move(l));
            cursors[o.id] = cursor;
        }
        std::stable_sort(lines.begin(), lines.end(), [](const json &x, const json &y) {
            return x.value("time", std::string()) < y.value("time", std::string());
        });
        return {{"lines", lines}, {"cursors", cursors}};
    }

    json stats(const json &a) {
        json out = json::array();
        for (const LogOwner &o : owners(a, "container")) {
            std::string dir = _store->journalDir(o.id);
            auto segments = listSegments(dir);
            uint64_t bytes = 0;
            for (const auto &s : segments) bytes += s.size;
            JournalReader reader(dir);
            json j = {{"id", o.id},
                      {"name", o.name},
                      {"exists", o.exists},
                      {"segments", segments.size()},
                      {"bytes", bytes},
                      {"writer", reader.writerActive()},
                      {"start", segments.empty() ? 0 : segments.front().start},
                      {"end", reader.end()}};
            uint64_t lines = 0;
            int64_t first = 0, last = 0;
            if (!segments.empty()) {
                Index index(dir);
                j["indexed"] = index.indexedTo();
                for (const auto &s : index.summaries()) {
                    lines += s.lines[1] + s.lines[2];
                    if (s.firstTime && (!first || s.firstTime < first)) first = s.firstTime;
                    if (s.lastTime > last) last = s.lastTime;
                }
            }
            j["lines_indexed"] = lines;
            j["first"] = first ? json(formatTime(first)) : json(nullptr);
            j["last"] = last ? json(formatTime(last)) : json(nullptr);
            out.push_back(j);
        }
        return out;
    }

    std::vector<AnalyzeSource> analyzeSources(const json &a) {
        std::vector<AnalyzeSource> out;
        for (const LogOwner &o : owners(a, "container"))
            out.push_back({_store->journalDir(o.id), o.id, o.name});
        return out;
    }

    void registerMethods() {
        auto args = [](const std::string &t) { return parse(t.c_str(), "arguments"); };
        method(
            "show", "copy a container's lines to stdout/stderr (logs show)",
            [=, this](const std::string &t) {
                json a = args(t);
                // One stream asked for, or JSON: all on stdout, ready for a pipe.
                bool one = a.value("json", false) || streamArg(a) != 0;
                show(a, str(a, "container"), 1, one ? 1 : 2);
                return std::string();
            },
            "{container, since, until, tail, stream, timestamps, json, follow}");
        method(
            "search", "full-text search across containers' output",
            [=, this](const std::string &t) { return search(args(t)).dump(); },
            "{pattern, container (one or a list), since, until, stream, limit, raw}");
        method(
            "read", "new lines after per-container cursors (logs monitor)",
            [=, this](const std::string &t) { return read(args(t)).dump(); },
            "{containers, cursors: {id: offset}, tail, limit}");
        method(
            "export", "journals to tar, tar.gz or jsonl with a manifest",
            [=, this](const std::string &t) {
                json a = args(t);
                ExportOptions o;
                o.format = str(a, "format");
                o.output = str(a, "output");
                int64_t now = nowNs();
                o.since = timeArg(a, "since", "--since", now);
                o.until = timeArg(a, "until", "--until", now);
                o.quiet = a.value("quiet", false);
                std::vector<ExportSource> sources;
                for (const LogOwner &w : owners(a, "container"))
                    sources.push_back({_store->journalDir(w.id), w.id, w.name});
                std::fflush(stdout);
                return exportLogs(sources, o).dump();
            },
            "{format, output, container (one or a list), since, until, quiet}");
        method(
            "analyze", "error patterns, line rates and resource samples",
            [=, this](const std::string &t) {
                json a = args(t);
                std::string kind = str(a, "kind");
                auto sources = analyzeSources(a);
                json out = json::object();
                if (kind.empty() || kind == "all" || kind == "errors")
                    out["errors"] = analyzeErrors(sources);
                if (kind.empty() || kind == "all" || kind == "performance")
                    out["performance"] = analyzePerformance(sources);
                if (kind.empty() || kind == "all" || kind == "resources")
                    out["resources"] = analyzeResources(sources);
                if (out.empty())
                    throw Error(MO_E_INVALID, "unknown analysis " + quote(kind) +
                                                  ": use errors, performance or resources");
                return out.dump();
            },
            "{kind: errors|performance|resources, container}");
        method(
            "stats", "journals: size, segments, lines indexed, first and last line",
            [=, this](const std::string &t) { return stats(args(t)).dump(); }, "{container}");
        method("gc", "remove the journals of containers that no longer exist",
               [this](const std::string &) {
                   return json{{"released", _store->gc()}}.dump();
               });
        method(
            "time", "a command-line time in ns and seconds since the epoch",
            [=](const std::string &t) {
                json a = args(t);
                std::string what = str(a, "what");
                int64_t ns = parseTime(str(a, "text"), what.empty() ? "time" : what, nowNs());
                return json{{"ns", ns}, {"seconds", static_cast<double>(ns) / 1e9}}.dump();
            },
            "{text, what}");
    }

    std::unique_ptr<common::Host> _hostApi;
    std::unique_ptr<LogStore> _store;
    mo_log_service _iface{};
};

} // namespace
} // namespace mobileops::logcollector

MOBILEOPS_PLUGIN(mobileops::logcollector::LogPlugin, "logcollector", "0.1.0",
                 "container output capture, search, export and analysis", "log:logcollector")
