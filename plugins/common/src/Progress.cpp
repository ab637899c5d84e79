#include <mobileops/common/Progress.h>

#include <unistd.h>

#include <cstdio>

namespace mobileops::common {

using Clock = std::chrono::steady_clock;

Progress Progress::forTerminal(bool quiet) { return Progress(!quiet && ::isatty(STDERR_FILENO)); }

Progress::Progress(Progress &&other) noexcept
    : _enabled(other._enabled), _items(std::move(other._items)), _drawn(other._drawn),
      _lastDraw(other._lastDraw) {
    other._enabled = false;
}

Progress::~Progress() {
    if (!_enabled) return;
    std::lock_guard<std::mutex> lock(_mutex);
    draw(true);
}

std::string Progress::bytes(uint64_t n) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
        v /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return buf;
}

Progress::Item *Progress::find(const std::string &id) {
    for (Item &item : _items)
        if (item.id == id) return &item;
    return nullptr;
}

void Progress::start(const std::string &id, const std::string &label, uint64_t total) {
    if (!_enabled) return;
    std::lock_guard<std::mutex> lock(_mutex);
    Item *item = find(id);
    if (!item) item = &_items.emplace_back();
    item->id = id;
    item->label = label;
    item->total = total;
    item->done = 0;
    item->status.clear();
    item->started = Clock::now();
    draw(true);
}

void Progress::update(const std::string &id, uint64_t done) {
    if (!_enabled) return;
    std::lock_guard<std::mutex> lock(_mutex);
    if (Item *item = find(id)) item->done = done;
    draw(false);
}

void Progress::finish(const std::string &id, const std::string &status) {
    if (!_enabled) return;
    std::lock_guard<std::mutex> lock(_mutex);
    if (Item *item = find(id)) {
        item->status = status;
        if (item->total) item->done = item->total;
    }
    draw(true);
}

void Progress::draw(bool force) {
    Clock::time_point now = Clock::now();
    if (!force && now - _lastDraw < std::chrono::milliseconds(100)) return;
    _lastDraw = now;
    std::string out;
    if (_drawn) out += "\033[" + std::to_string(_drawn) + "F"; // to the first line drawn
    for (const Item &item : _items) {
        double seconds = std::chrono::duration<double>(now - item.started).count();
        std::string line = item.label + "  " + bytes(item.done);
        if (item.total) line += " / " + bytes(item.total);
        if (!item.status.empty())
            line += "  " + item.status;
        else if (seconds > 0.2)
            line += "  " + bytes(static_cast<uint64_t>(item.done / seconds)) + "/s";
        out += "\033[2K" + line + "\n";
    }
    _drawn = _items.size();
    std::fwrite(out.data(), 1, out.size(), stderr);
    std::fflush(stderr);
}

} // namespace mobileops::common
