// Progress of long transfers (import, load, save, pull, push, backup, log export) on the operator's
// terminal: one line per item (a layer, a blob, an archive) with bytes, total and rate,
// redrawn in place at most ten times a second. Silent when stderr is not a terminal or
// the caller asked for quiet, so scripts and logs see only the final result.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace mobileops::common {

class Progress {
public:
    // Draws only when `enabled`; see forTerminal.
    explicit Progress(bool enabled) : _enabled(enabled) {}
    // Enabled when stderr is a terminal and not `quiet`.
    static Progress forTerminal(bool quiet);
    ~Progress();
    Progress(Progress &&other) noexcept;
    Progress(const Progress &) = delete;
    Progress &operator=(const Progress &) = delete;

    bool enabled() const { return _enabled; }

    // Items are addressed by id (a digest, a file name). Safe to call from several
    // threads (parallel blob transfers).
    void start(const std::string &id, const std::string &label, uint64_t total);
    void update(const std::string &id, uint64_t done);
    void finish(const std::string &id, const std::string &status = "done");

    // "12.3 MiB"
    static std::string bytes(uint64_t n);

private:
    struct Item {
        std::string id, label, status;
        uint64_t done = 0, total = 0;
        std::chrono::steady_clock::time_point started;
    };
    Item *find(const std::string &id);
    void draw(bool force);

    bool _enabled = false;
    std::mutex _mutex;
    std::vector<Item> _items;
    size_t _drawn = 0; // lines on screen from the last draw
    std::chrono::steady_clock::time_point _lastDraw{};
};

} // namespace mobileops::common
