#include "Capture.h"

#include "Index.h"

#include <mobileops/common/Errors.h>
#include <mobileops/services.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>

#include <sys/resource.h>
#include <unistd.h>

namespace mobileops::logcollector {

using common::Error;
using common::quote;

namespace {

int64_t nowNs() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

constexpr uint64_t kIndexBatch = 50'000;

void warn(const common::Host &host, const std::string &message) {
    if (host.api() != nullptr) host.log(MO_LOG_WARNING, message);
}

// One cgroup sample into the index; false (after a warning) when sampling cannot go on.
bool sample(const common::Host &host, const CaptureOptions &options, Index &index) {
    if (host.api() == nullptr) return false;
    const std::string what = "log of " + quote(options.containerId) + ": ";
    std::string why;
    auto svc = static_cast<const mo_cgroup_service *>(host.lookup(MO_SERVICE_CGROUP, &why));
    if (!svc || svc->size < offsetof(mo_cgroup_service, stats) + sizeof svc->stats || !svc->stats) {
        warn(host, what + "no cgroup samples: " +
                       (why.empty() ? std::string("the cgroup service has no stats") : why));
        return false;
    }
    mo_buffer buf = MO_BUFFER_INIT;
    mo_error err = MO_ERROR_INIT;
    int rc = svc->stats(svc->self, options.cgroup.c_str(), &buf, &err);
    std::string out = buf.data ? std::string(buf.data, buf.len) : std::string();
    host.api()->buffer_free(&buf);
    if (rc < 0) {
        // The cgroup goes with the container, often before the capture is closed.
        warn(host, what + "cgroup samples stop: " + quote(options.cgroup) + ": " +
                       (err.message[0] ? err.message : "stats failed"));
        return false;
    }
    index.addSample({nowNs(), nlohmann::json::parse(out)});
    return true;
}

} // namespace

Capture::Capture(const common::Host &host, std::string dir, CaptureOptions options)
    : _host(host), _dir(std::move(dir)), _options(std::move(options)) {
    if (_options.maxLine == 0 || _options.maxLine > kMaxRecordData)
        throw Error(MO_E_INVALID, "invalid maxLine " + quote(std::to_string(_options.maxLine)) +
                                      ": expected 1 to " + std::to_string(kMaxRecordData) +
                                      " bytes");
    _writer = std::make_unique<JournalWriter>(_dir, _options.retention);
    _committed = _writer->end();
}

void Capture::startThread() {
    // Not in the constructor: the runtime opens the log before it clones the container
    // with a raw clone3, which runs no fork handlers; a thread holding malloc's lock at
    // that moment would deadlock the child. Output only comes after the clone.
    if (_options.index && !_threadStarted) {
        _threadStarted = true;
        _thread = std::thread([this] { indexLoop(); });
    }
}

Capture::~Capture() {
    try {
        close();
    } catch (...) {
    }
}

void Capture::write(int stream, int64_t time, const char *data, size_t len) {
    if (_closed)
        throw Error(MO_E_STATE, "the capture of " + quote(_options.containerId) + " is closed");
    if (stream != 1 && stream != 2)
        throw Error(MO_E_INVALID, "invalid stream " + quote(std::to_string(stream)) +
                                      ": expected 1 (stdout) or 2 (stderr)");
    if (len == 0) return;
    startThread();
    if (time == 0) time = nowNs();
    const RecordType type = stream == 1 ? RecordType::out : RecordType::err;
    const size_t max = _options.maxLine;
    std::string &held = _partial[stream];
    const char *p = data;
    const char *end = data + len;
    // A line longer than max goes out in pieces of exactly max bytes as soon as more than
    // max bytes of it are known; a piece is held while it could still be the whole line,
    // so the records depend on the bytes only, never on how the pipe cut them.
    while (p < end) {
        auto nl = static_cast<const char *>(std::memchr(p, '\n', size_t(end - p)));
        const char *stop = nl ? nl : end;
        if (held.empty()) {
            for (; size_t(stop - p) > max; p += max)
                _writer->add(type, kPartial, time, std::string_view(p, max));
            if (nl)
                _writer->add(type, 0, time, std::string_view(p, size_t(stop - p)));
            else {
                held.assign(p, size_t(stop - p));
                _partialTime[stream] = time;
            }
        } else {
            int64_t first = _partialTime[stream];
            held.append(p, size_t(stop - p));
            size_t off = 0;
            for (; held.size() - off > max; off += max) {
                _writer->add(type, kPartial, first, std::string_view(held.data() + off, max));
                first = time;
            }
            if (nl) {
                _writer->add(type, 0, first,
                             std::string_view(held.data() + off, held.size() - off));
                held.clear();
            } else {
                held.erase(0, off);
                _partialTime[stream] = first;
            }
        }
        p = nl ? nl + 1 : end;
    }
    uint64_t committed = _writer->commit();
    if (_options.index) {
        std::lock_guard<std::mutex> lock(_mutex);
        _committed = committed;
    }
}

void Capture::flush() {
    if (_closed) return;
    for (int stream : {1, 2}) {
        std::string &held = _partial[stream];
        if (held.empty()) continue;
        _writer->add(stream == 1 ? RecordType::out : RecordType::err, kPartial,
                     _partialTime[stream], held);
        held.clear();
    }
    uint64_t committed = _writer->commit();
    std::lock_guard<std::mutex> lock(_mutex);
    _committed = committed;
}

void Capture::close() {
    if (_closed) return;
    std::exception_ptr failed;
    try {
        flush();
        _writer->finish("{}");
    } catch (...) {
        failed = std::current_exception();
    }
    _closed = true;
    if (_thread.joinable()) {
        std::unique_lock<std::mutex> lock(_mutex);
        _committed = _writer->end();
        _draining = true;
        _wake.notify_all();
        _progress.wait_for(lock, std::chrono::nanoseconds(_options.indexDrainTimeout),
                           [this] { return _indexDone || _indexed >= _committed; });
        _stop = true;
        _wake.notify_all();
        lock.unlock();
        _thread.join();
    }
    if (failed) std::rethrow_exception(failed);
}

uint64_t Capture::end() const { return _writer->end(); }

void Capture::indexLoop() {
    // Below the capture, which must keep up with the container; the index may lag.
    errno = 0;
    int nice = ::getpriority(PRIO_PROCESS, ::gettid());
    if (errno == 0 && nice < 10) ::setpriority(PRIO_PROCESS, ::gettid(), 10);

    bool sampling = !_options.cgroup.empty() && _options.sampleInterval > 0;
    int64_t nextSample = nowNs();
    std::unique_ptr<Index> index;
    std::unique_ptr<JournalReader> reader;
    uint64_t indexed = 0;
    bool failed = false;
    auto stopping = [this] {
        std::lock_guard<std::mutex> lock(_mutex);
        return _stop;
    };
    for (;;) {
        try {
            if (!index) {
                index = std::make_unique<Index>(_dir);
                reader = std::make_unique<JournalReader>(_dir);
            }
            while (index->update(*reader, kIndexBatch) == kIndexBatch && !stopping()) {
            }
            indexed = index->indexedTo();
        } catch (const std::exception &e) {
            // The capture goes on without an index; a search catches up from the journal.
            warn(_host, "log of " + quote(_options.containerId) + ": indexing stops: " + e.what());
            failed = true;
        }
        if (!failed && sampling && nowNs() >= nextSample) {
            try {
                sampling = sample(_host, _options, *index);
            } catch (const std::exception &e) {
                warn(_host, "log of " + quote(_options.containerId) +
                                ": cgroup samples stop: " + e.what());
                sampling = false;
            }
            nextSample = nowNs() + _options.sampleInterval;
        }
        std::unique_lock<std::mutex> lock(_mutex);
        bool moved = indexed != _indexed;
        _indexed = indexed;
        _indexDone = failed;
        _progress.notify_all();
        if (_stop || failed) return;
        // While close() waits for the index, go round again at once as long as it moves.
        bool behind = _draining && _indexed < _committed;
        if (behind && moved) continue;
        auto wait = std::chrono::milliseconds(behind ? 10 : 500);
        if (sampling)
            wait = std::min(
                wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::nanoseconds(std::max<int64_t>(nextSample - nowNs(), 0))));
        bool draining = _draining;
        _wake.wait_for(lock, wait, [&] { return _stop || _draining != draining; });
        if (_stop) return;
    }
}

} // namespace mobileops::logcollector
