// `logs export`: journals out as tar, tar.gz (libarchive) or JSON lines.
//
// A tar holds, per container, <name>-<id12>/stdout.log and stderr.log (only streams with
// lines) in the CRI text format "<RFC 3339 ns time> <F|P> <line>" (P: the line continues
// in the next one; bytes as written, not re-encoded), and manifest.json:
//   {format: "mobileops-logs/1", created, filters: {since, until},
//    containers: [{id, name, files: [{path, stream, lines, bytes, sha256, first, last}]}]}
// so a receiver can check every file. jsonl is one lineJson object per line (container by
// container, each in journal order) with no manifest.
// What is exported is each journal up to its end when the export starts: a container
// writing meanwhile does not make the archive inconsistent with its manifest.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::logcollector {

struct ExportSource {
    std::string dir; // the container's journal directory
    std::string containerId, name;
};

struct ExportOptions {
    std::string format; // "tar", "tar.gz", "jsonl"; anything else: Error MO_E_INVALID
    std::string output; // file path; "" or "-": stdout (refused for tar/tar.gz on a tty)
    int64_t since = 0, until = 0;
    bool quiet = false; // no progress even on a terminal
};

// Writes the export (to a temporary file renamed into place, so a failed export leaves
// nothing) with progress on stderr when it is a terminal. Returns a report:
// {output, format, containers, lines, bytes (of the output), sha256 (of the output)}.
nlohmann::json exportLogs(const std::vector<ExportSource> &sources, const ExportOptions &options);

} // namespace mobileops::logcollector
