// Capture: a container's output, as the runtime's monitor reads it from the pipes, into
// the journal, split into lines.
//
// write() takes any chunk of bytes of one stream: each complete line becomes a record
// (time: the chunk's), the unterminated rest is held per stream until its newline comes,
// it reaches the line limit (then written as a partial record and continued), flush() or
// close(). Records of one chunk go in one write(2).
//
// A background thread (optional), started by the first write, keeps the search index current and
// samples the container's cgroup through the cgroup service every sampleInterval into the index; it
// runs at a lower CPU priority than the capture itself.
#pragma once

#include "Journal.h"

#include <mobileops/common/Host.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace mobileops::logcollector {

struct CaptureOptions {
    std::string containerId;
    std::string name;
    Retention retention;
    size_t maxLine = 16 * 1024;                // bytes of a line per record; longer lines are split
    bool index = true;                         // run the index/sampling thread
    std::string cgroup;                        // the cgroup service's path; empty: no samples
    int64_t sampleInterval = 10'000'000'000;   // ns
    int64_t indexDrainTimeout = 2'000'000'000; // close(): how long to let the index catch up
};

class Capture {
public:
    // Opens the journal in `dir` (JournalWriter: lock, repair, retention, start record).
    // `host` is used for the cgroup service (samples) and warnings; it must outlive this.
    Capture(const common::Host &host, std::string dir, CaptureOptions options);
    ~Capture(); // close() if not done, swallowing errors
    Capture(const Capture &) = delete;
    Capture &operator=(const Capture &) = delete;

    // stream: 1 stdout, 2 stderr. time 0: now.
    void write(int stream, int64_t time, const char *data, size_t len);
    // Held partial lines out now, marked partial.
    void flush();
    // Flush, end record, writer released; then lets the index thread catch up for at
    // most indexDrainTimeout and stops it. Idempotent.
    void close();

    uint64_t end() const; // journal end offset

private:
    void startThread(); // at the first write
    void indexLoop();

    const common::Host &_host;
    std::string _dir;
    CaptureOptions _options;
    std::unique_ptr<JournalWriter> _writer;
    std::string _partial[3];
    int64_t _partialTime[3] = {0, 0, 0};
    bool _closed = false;

    std::thread _thread;
    bool _threadStarted = false;
    std::mutex _mutex;                 // guards the fields below
    std::condition_variable _wake;     // to the thread: stop, or close() waits for it
    std::condition_variable _progress; // from the thread: _indexed moved or it gave up
    bool _stop = false;
    bool _draining = false;  // close() waits for the index to reach _committed
    bool _indexDone = false; // the thread gave up indexing
    uint64_t _committed = 0; // journal end the thread may index up to
    uint64_t _indexed = 0;   // the index's progress as the thread last saw it
};

} // namespace mobileops::logcollector
