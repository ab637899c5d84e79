// Diagnostics on stderr. Errors and warnings always; info and debug only with --debug.
#pragma once

#include <functional>
#include <string>

namespace mobileops::core::log {

enum class Level { Error = 0, Warning = 1, Info = 2, Debug = 3 };

void setLevel(Level level);
Level level();
bool enabled(Level level);
// "mobileops: warning: <message>" (source, when given, names a plugin: "[nsruntime] ...").
void write(Level level, const std::string &message, const std::string &source = {});

// Where lines go instead of stderr (`mobileops-runc --log FILE`); empty: stderr again.
// The sink gets the level and the message with its source, without the prefix.
void setSink(std::function<void(Level, const std::string &)> sink);

inline void warning(const std::string &m) { write(Level::Warning, m); }
inline void debug(const std::string &m) {
    if (enabled(Level::Debug)) write(Level::Debug, m);
}

} // namespace mobileops::core::log
