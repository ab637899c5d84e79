#include "mobileops/core/Log.h"

#include <unistd.h>

namespace mobileops::core::log {

namespace {
Level g_level = Level::Warning;
std::function<void(Level, const std::string &)> g_sink;
} // namespace

void setSink(std::function<void(Level, const std::string &)> sink) { g_sink = std::move(sink); }

void setLevel(Level level) { g_level = level; }
Level level() { return g_level; }
bool enabled(Level level) { return static_cast<int>(level) <= static_cast<int>(g_level); }

void write(Level level, const std::string &message, const std::string &source) {
    if (!enabled(level)) return;
    if (g_sink) {
        g_sink(level, source.empty() ? message : "[" + source + "] " + message);
        return;
    }
    static const char *const names[] = {"error", "warning", "info", "debug"};
    std::string line = "mobileops: ";
    line += names[static_cast<int>(level)];
    line += ": ";
    if (!source.empty()) line += "[" + source + "] ";
    line += message;
    line += '\n';
    // One write so lines from concurrent processes do not interleave.
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
}

} // namespace mobileops::core::log
