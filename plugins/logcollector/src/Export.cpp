#include "Export.h"

#include "Journal.h"
#include "Query.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Progress.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <utility>

namespace mobileops::logcollector {

using common::Error;
using common::quote;
using common::sysError;
using nlohmann::json;

namespace {

constexpr size_t kChunk = 256 * 1024;
constexpr uint64_t kProgressEvery = 8192; // records between progress updates

class Sha256 {
public:
    Sha256() : _ctx(EVP_MD_CTX_new()) {
        if (!_ctx || EVP_DigestInit_ex(_ctx, EVP_sha256(), nullptr) != 1)
            throw Error(MO_E_INTERNAL, "sha256: cannot set up the digest");
    }
    ~Sha256() { EVP_MD_CTX_free(_ctx); }
    Sha256(const Sha256 &) = delete;
    Sha256 &operator=(const Sha256 &) = delete;

    void update(const void *data, size_t len) { EVP_DigestUpdate(_ctx, data, len); }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        EVP_DigestFinal_ex(_ctx, md, &len);
        static const char digits[] = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < len; ++i) {
            out.push_back(digits[md[i] >> 4]);
            out.push_back(digits[md[i] & 15]);
        }
        return out;
    }

private:
    EVP_MD_CTX *_ctx;
};

// Where the export's bytes go (the temporary file or stdout): counted and hashed on the
// way, so the report needs no second read.
class Sink {
public:
    Sink(int fd, std::string name) : _fd(fd), _name(std::move(name)) {}

    void write(const void *data, size_t len) {
        _sha.update(data, len);
        _bytes += len;
        auto *p = static_cast<const char *>(data);
        while (len > 0) {
            ssize_t n = ::write(_fd, p, len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw sysError("write " + _name, errno);
            p += n;
            len -= static_cast<size_t>(n);
        }
    }
    uint64_t bytes() const { return _bytes; }
    std::string sha256() { return _sha.hex(); }

private:
    int _fd;
    std::string _name;
    uint64_t _bytes = 0;
    Sha256 _sha;
};

// The output under a temporary name in its own directory, renamed into place by commit()
// and removed otherwise.
class TempOutput {
public:
    explicit TempOutput(const std::string &output)
        : _output(output), _path(output + ".tmp-" + std::to_string(::getpid())) {
        _fd = ::open(_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (_fd < 0) throw sysError("export to " + quote(output), errno);
    }
    ~TempOutput() {
        if (_fd >= 0) ::close(_fd);
        if (!_committed) ::unlink(_path.c_str());
    }
    TempOutput(const TempOutput &) = delete;
    TempOutput &operator=(const TempOutput &) = delete;

    int fd() const { return _fd; }
    void commit() {
        if (::fsync(_fd) < 0) throw sysError("export to " + quote(_output), errno);
        int fd = std::exchange(_fd, -1);
        if (::close(fd) < 0) throw sysError("export to " + quote(_output), errno);
        if (::rename(_path.c_str(), _output.c_str()) < 0)
            throw sysError("export to " + quote(_output), errno);
        _committed = true;
    }

private:
    std::string _output, _path;
    int _fd = -1;
    bool _committed = false;
};

struct ArchiveFree {
    void operator()(archive *a) const { archive_write_free(a); }
};

// libarchive's writes go through the sink; an exception there waits in `error` until
// the libarchive call that caused it returns.
struct ArchiveClient {
    Sink *sink;
    std::exception_ptr error;

    static la_ssize_t write(archive *a, void *self, const void *buffer, size_t length) {
        auto *c = static_cast<ArchiveClient *>(self);
        try {
            c->sink->write(buffer, length);
            return static_cast<la_ssize_t>(length);
        } catch (...) {
            c->error = std::current_exception();
            archive_set_error(a, EIO, "output failed");
            return -1;
        }
    }
};

// Whether a record goes out: a line split in pieces is in or out as a whole, by the time
// of its first piece.
class Chains {
public:
    Chains(int64_t since, int64_t until) : _since(since), _until(until) {}
    bool take(const Record &r) {
        if (!r.isLine()) {
            reset();
            return false;
        }
        const int s = static_cast<int>(r.type);
        if (!_open[s])
            _take[s] = (_since == 0 || r.time >= _since) && (_until == 0 || r.time <= _until);
        _open[s] = r.partial();
        return _take[s];
    }
    void reset() { _open[1] = _open[2] = false; }

private:
    int64_t _since, _until;
    bool _open[3] = {false, false, false};
    bool _take[3] = {false, false, false};
};

struct Member {
    int stream = 1;
    std::string path;
    uint64_t lines = 0, bytes = 0;
    int64_t first = 0, last = 0;
    uint64_t from = UINT64_MAX, to = 0; // offsets of its first record and after its last
    std::string sha256;
};

struct Container {
    const ExportSource *source = nullptr;
    uint64_t start = 0, end = 0; // the journal's extent at the start of the export
    Member members[3];
};

std::string folderName(const ExportSource &s) {
    std::string id = s.containerId.substr(0, 12);
    std::string name;
    for (char c : s.name) name.push_back(c == '/' ? '_' : c);
    return name.empty() ? id : name + "-" + id;
}

// "<time> <F|P> <line>\n", the CRI log format without its stream field (one file a
// stream).
void appendCri(std::string &out, const Record &r) {
    char head[kTimeLength + 3];
    formatTimeTo(r.time, head);
    head[kTimeLength] = ' ';
    head[kTimeLength + 1] = r.partial() ? 'P' : 'F';
    head[kTimeLength + 2] = ' ';
    out.append(head, sizeof head);
    out.append(r.data);
    out.push_back('\n');
}
constexpr uint64_t criSize(size_t data) { return kTimeLength + 3 + data + 1; }

Error rotated(const Container &c) {
    return Error(MO_E_STATE,
                 "export " +
                     quote(c.source->name.empty() ? c.source->containerId : c.source->name) +
                     ": its oldest output was rotated away during the export; "
                     "export again, or with --since");
}

class Exporter {
public:
    Exporter(const std::vector<ExportSource> &sources, const ExportOptions &options)
        : _options(options), _progress(common::Progress::forTerminal(options.quiet)) {
        _containers.resize(sources.size());
        for (size_t i = 0; i < sources.size(); ++i) {
            _containers[i].source = &sources[i];
            _containers[i].end = JournalReader(sources[i].dir).end();
        }
    }

    uint64_t lines() const { return _lines; }

    void tar(Sink &sink, bool gzip) {
        std::unique_ptr<archive, ArchiveFree> a(archive_write_new());
        if (!a) throw Error(MO_E_INTERNAL, "libarchive: out of memory");
        ArchiveClient client{&sink, nullptr};
        auto check = [&](int r, const std::string &what) {
            if (r >= ARCHIVE_WARN) return;
            if (client.error) std::rethrow_exception(client.error);
            const char *why = archive_error_string(a.get());
            throw Error(MO_E_INTERNAL, what + ": " + (why ? why : "libarchive failed"));
        };
        check(archive_write_set_format_pax_restricted(a.get()), "tar format");
        if (gzip) check(archive_write_add_filter_gzip(a.get()), "gzip filter");
        check(archive_write_open(a.get(), &client, nullptr, &ArchiveClient::write, nullptr),
              "open the archive");

        const int64_t created = nowNs();
        std::unique_ptr<archive_entry, void (*)(archive_entry *)> entry(archive_entry_new(),
                                                                        archive_entry_free);
        auto header = [&](const std::string &path, uint64_t size) {
            archive_entry_clear(entry.get());
            archive_entry_set_pathname(entry.get(), path.c_str());
            archive_entry_set_filetype(entry.get(), AE_IFREG);
            archive_entry_set_perm(entry.get(), 0644);
            archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
            archive_entry_set_mtime(entry.get(), created / 1'000'000'000, 0);
            check(archive_write_header(a.get(), entry.get()), "write " + quote(path));
        };

        std::string chunk;
        chunk.reserve(2 * kChunk);
        for (Container &c : _containers) {
            count(c);
            const std::string folder = folderName(*c.source);
            int streams = 0;
            for (int s = 1; s <= 2; ++s) streams += c.members[s].lines > 0;
            uint64_t pass = 1;
            for (int s = 1; s <= 2; ++s) {
                Member &m = c.members[s];
                if (m.lines == 0) continue;
                m.path = folder + (s == 1 ? "/stdout.log" : "/stderr.log");
                header(m.path, m.bytes);
                Sha256 sha;
                uint64_t written = 0;
                auto put = [&] {
                    sha.update(chunk.data(), chunk.size());
                    written += chunk.size();
                    if (written > m.bytes) throw changed(c);
                    la_ssize_t n = archive_write_data(a.get(), chunk.data(), chunk.size());
                    if (n < 0 || static_cast<size_t>(n) != chunk.size())
                        check(ARCHIVE_FATAL, "write " + quote(m.path));
                    chunk.clear();
                };
                JournalReader reader(c.source->dir);
                if (reader.seek(m.from) != m.from || reader.takeGap()) throw rotated(c);
                Chains chains(_options.since, _options.until);
                uint64_t n = 0;
                while (auto r = reader.next()) {
                    if (r->offset >= m.to) break;
                    if (reader.takeGap()) throw rotated(c);
                    if (chains.take(*r) && static_cast<int>(r->type) == s) {
                        appendCri(chunk, *r);
                        if (chunk.size() >= kChunk) put();
                    }
                    if (++n % kProgressEvery == 0) progress(c, pass, streams + 1, r->offset);
                }
                put();
                if (written != m.bytes) throw changed(c);
                m.sha256 = sha.hex();
                ++pass;
            }
            finishProgress(c);
        }

        std::string manifest = this->manifest(created).dump(2) + "\n";
        header("manifest.json", manifest.size());
        if (archive_write_data(a.get(), manifest.data(), manifest.size()) !=
            static_cast<la_ssize_t>(manifest.size()))
            check(ARCHIVE_FATAL, "write `manifest.json`");
        check(archive_write_close(a.get()), "finish the archive");
    }

    void jsonl(Sink &sink) {
        std::string chunk;
        chunk.reserve(2 * kChunk);
        for (Container &c : _containers) {
            JournalReader reader(c.source->dir);
            c.start = reader.seek(0);
            reader.takeGap();
            startProgress(c);
            Chains chains(_options.since, _options.until);
            uint64_t n = 0;
            while (auto r = reader.next()) {
                if (r->next() > c.end) break;
                if (reader.takeGap()) chains.reset();
                if (chains.take(*r)) {
                    appendLineJson(chunk, *r, c.source->containerId, c.source->name);
                    chunk.push_back('\n');
                    ++_lines;
                    if (chunk.size() >= kChunk) {
                        sink.write(chunk.data(), chunk.size());
                        chunk.clear();
                    }
                }
                if (++n % kProgressEvery == 0) progress(c, 0, 1, r->offset);
            }
            finishProgress(c);
        }
        sink.write(chunk.data(), chunk.size());
    }

private:
    // The first pass: what each stream's file will hold, for its tar header.
    void count(Container &c) {
        JournalReader reader(c.source->dir);
        c.start = reader.seek(0);
        reader.takeGap();
        startProgress(c);
        Chains chains(_options.since, _options.until);
        int streams = 0;
        for (int s = 1; s <= 2; ++s) c.members[s].stream = s;
        uint64_t n = 0;
        while (auto r = reader.next()) {
            if (r->next() > c.end) break;
            if (reader.takeGap()) chains.reset();
            if (chains.take(*r)) {
                Member &m = c.members[static_cast<int>(r->type)];
                if (m.lines++ == 0) {
                    m.first = r->time;
                    m.from = r->offset;
                }
                m.bytes += criSize(r->data.size());
                m.last = r->time;
                m.to = r->next();
            }
            if (++n % kProgressEvery == 0) {
                streams = (c.members[1].lines > 0) + (c.members[2].lines > 0);
                progress(c, 0, std::max(streams, 1) + 1, r->offset);
            }
        }
        _lines += c.members[1].lines + c.members[2].lines;
    }

    Error changed(const Container &c) const {
        return Error(MO_E_STATE,
                     "export " +
                         quote(c.source->name.empty() ? c.source->containerId : c.source->name) +
                         ": its journal changed while it was read; export again");
    }

    void startProgress(const Container &c) {
        _progress.start(c.source->containerId,
                        c.source->name.empty() ? c.source->containerId : c.source->name,
                        c.end > c.start ? c.end - c.start : 0);
    }
    // Done as a share of the container's passes over its journal: `pass` of `passes`.
    void progress(const Container &c, uint64_t pass, int passes, uint64_t offset) {
        if (!_progress.enabled() || c.end <= c.start) return;
        uint64_t span = c.end - c.start, at = std::min(offset, c.end) - c.start;
        _progress.update(c.source->containerId,
                         (pass * span + at) / static_cast<uint64_t>(std::max(passes, 1)));
    }
    void finishProgress(const Container &c) {
        if (c.end > c.start) _progress.update(c.source->containerId, c.end - c.start);
        _progress.finish(c.source->containerId);
    }

    json manifest(int64_t created) const {
        json containers = json::array();
        for (const Container &c : _containers) {
            json files = json::array();
            for (int s = 1; s <= 2; ++s) {
                const Member &m = c.members[s];
                if (m.lines == 0) continue;
                files.push_back({{"path", m.path},
                                 {"stream", s == 1 ? "stdout" : "stderr"},
                                 {"lines", m.lines},
                                 {"bytes", m.bytes},
                                 {"sha256", m.sha256},
                                 {"first", formatTime(m.first)},
                                 {"last", formatTime(m.last)}});
            }
            containers.push_back(
                {{"id", c.source->containerId}, {"name", c.source->name}, {"files", files}});
        }
        auto time = [](int64_t t) { return t == 0 ? json(nullptr) : json(formatTime(t)); };
        return {{"format", "mobileops-logs/1"},
                {"created", formatTime(created)},
                {"filters", {{"since", time(_options.since)}, {"until", time(_options.until)}}},
                {"containers", containers}};
    }

    const ExportOptions &_options;
    common::Progress _progress;
    std::vector<Container> _containers;
    uint64_t _lines = 0;
};

} // namespace

json exportLogs(const std::vector<ExportSource> &sources, const ExportOptions &options) {
    const std::string &format = options.format;
    if (format != "tar" && format != "tar.gz" && format != "jsonl")
        throw Error(MO_E_INVALID,
                    "unknown export format " + quote(format) + ": use tar, tar.gz or jsonl");
    const bool toStdout = options.output.empty() || options.output == "-";
    if (toStdout && format != "jsonl" && ::isatty(STDOUT_FILENO))
        throw Error(MO_E_INVALID, "refusing to write a " + format +
                                      " archive to a terminal: use -o FILE or redirect stdout");

    std::optional<TempOutput> file;
    if (!toStdout) file.emplace(options.output);
    Sink sink(toStdout ? STDOUT_FILENO : file->fd(),
              toStdout ? std::string("stdout") : quote(options.output));
    Exporter exporter(sources, options);
    if (format == "jsonl")
        exporter.jsonl(sink);
    else
        exporter.tar(sink, format == "tar.gz");
    if (file) file->commit();

    return {{"output", toStdout ? "-" : options.output},
            {"format", format},
            {"containers", sources.size()},
            {"lines", exporter.lines()},
            {"bytes", sink.bytes()},
            {"sha256", sink.sha256()}};
}

} // namespace mobileops::logcollector
