// Helpers the archive suites share (ArchiveUnitTest.cpp without privilege, ArchiveTest.cpp
// as root): whole files in and out, the names of a tree listing, extract options.
#pragma once

#include "Archive.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace mobileops::storage::test_support {

inline std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const std::string &path, const std::string &content) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << content;
}

inline std::vector<std::string> names(const std::map<std::string, std::string> &tree) {
    std::vector<std::string> out;
    for (auto &[k, v] : tree) out.push_back(k);
    return out;
}

inline ExtractOptions opts(Whiteouts w = Whiteouts::Refuse) {
    ExtractOptions o;
    o.whiteouts = w;
    return o;
}

} // namespace mobileops::storage::test_support
