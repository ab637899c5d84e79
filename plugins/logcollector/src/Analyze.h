// `logs analyze`: summaries a person can act on, computed from the journals and the
// index's samples.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace mobileops::logcollector {

struct AnalyzeSource {
    std::string dir, containerId, name;
};

// performance: per container {id, name, lines, bytes, streams: {stdout: {lines, bytes},
// stderr: {...}}, first, last, duration_s, rate: {avg, peak, peak_at} (lines/s over
// one-second buckets), busiest: [{minute, lines}] (top 5), partial, line_length: {avg,
// max}}.
nlohmann::json analyzePerformance(const std::vector<AnalyzeSource> &sources);

// errors: per container {id, name, lines, error_lines, warning_lines, patterns: [{level
// ("error"|"warning"), pattern (digits, hex ids, quoted strings and paths folded), count,
// first, last, example, stream}] top 20 by count}. Error-like: fatal, panic, error, err,
// exception, traceback, failed/failure, denied, refused, segfault, "out of memory", oom;
// warning-like: warn, warning, deprecated, timeout, timed out, retry; whole words, any
// case.
nlohmann::json analyzeErrors(const std::vector<AnalyzeSource> &sources);

// resources: per container {id, name, samples: n, interval_s, cpu: {avg_percent,
// max_percent}, memory: {min, avg, max, last} bytes, pids: {max, last}, series: [{time,
// cpu_percent, memory, pids}] (at most 20, evenly spaced)}; {note} when there are no
// samples (no cgroup service, or the container ran shorter than the interval).
nlohmann::json analyzeResources(const std::vector<AnalyzeSource> &sources);

} // namespace mobileops::logcollector
