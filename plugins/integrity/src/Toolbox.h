// The toolbox manifest: the sha256 of every file mobileops itself runs (bin/mobileops,
// the plugins, modules and libexec helpers, the shipped workflow scripts), written at
// build and install time by cmake/ToolboxManifest.cmake to <prefix>/lib/mobileops/
// toolbox.json, and checked by `mobileops integrity check`.
//
//   {"format": 1, "algorithm": "sha256", "created": "...",
//    "files": {"bin/mobileops": {"sha256": "<hex>", "size": N, "mode": "0755"}, ...}}
//
// Paths are relative to the prefix. The plugin loader reads the same file when
// `plugins.verify = manifest` (core/src/PluginManager.cpp).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::integrity {

// The directories below the prefix whose files the manifest covers, and which files.
//   bin/mobileops and bin/mobileops-* (not the test programs a build tree keeps there),
//   lib/mobileops/plugins/*.so, lib/mobileops/modules/*.so,
//   libexec/mobileops/*, share/mobileops/scripts/*.lua
// Compare `prefix` against `manifestFile`: {ok, manifest, prefix, checked,
// changed: [{path, what: ["content"|"size"|"mode"], expected, actual}], missing: [...],
// extra: [...]} (extra: a file in a covered directory the manifest does not list, such
// as a plugin dropped in later). Throws MO_E_NOT_FOUND when the manifest is missing,
// MO_E_INVALID when it does not parse.
nlohmann::json checkToolbox(const std::string &prefix, const std::string &manifestFile);

} // namespace mobileops::integrity
