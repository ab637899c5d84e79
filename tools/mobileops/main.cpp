#include "Dispatcher.h"

#include "mobileops/core/PluginManager.h"

#include <mobileops/abi.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#ifndef MOBILEOPS_VERSION
#define MOBILEOPS_VERSION "0.1.0"
#endif

namespace mobileops::core {
std::string luaApiMarkdown();
}

namespace {

const char kUsage[] = "Usage: mobileops [--json] [--debug] WORKFLOW VERB [ARGS...]\n"
                      "Run `mobileops help` for the workflows.\n";

} // namespace

int main(int argc, char **argv) {
    mobileops::GlobalFlags flags;
    std::vector<std::string> rest;
    // Installed as mobileops-runc (a symlink), the binary is `mobileops oci`: engines run
    // it with runc's command line.
    const char *slash = argc > 0 ? std::strrchr(argv[0], '/') : nullptr;
    if (argc > 0 && std::strcmp(slash ? slash + 1 : argv[0], "mobileops-runc") == 0)
        return mobileops::ociMain(std::vector<std::string>(argv + 1, argv + argc), flags);
    int i = 1;
    for (; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--json") {
            flags.json = true;
        } else if (a == "--debug") {
            flags.debug = true;
        } else if (a == "--version" || a == "-V") {
            // No plugin, script or store is touched: this is the cheapest command.
            std::printf("mobileops %s (plugin ABI %d.%d)\nfeatures:", MOBILEOPS_VERSION,
                        MO_ABI_MAJOR, MO_ABI_MINOR);
            for (const std::string &f : mobileops::core::PluginManager::coreFeatures())
                std::printf(" %s", f.c_str());
            std::printf("\n");
            return 0;
        } else if (a == "--help" || a == "-h") {
            rest.push_back("help");
        } else if (a == "--lua-api-docs") {
            std::fputs(mobileops::core::luaApiMarkdown().c_str(), stdout);
            return 0;
        } else if (a.size() > 1 && a[0] == '-' && a != "--") {
            std::fprintf(stderr, "mobileops: unknown global option `%s`\n%s", a.c_str(), kUsage);
            return 2;
        } else {
            break;
        }
    }
    if (i < argc && std::strcmp(argv[i], "oci") == 0)
        return mobileops::ociMain(std::vector<std::string>(argv + i + 1, argv + argc), flags);
    for (; i < argc; ++i) rest.push_back(argv[i]);
    if (rest.empty()) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    return mobileops::dispatch(rest, flags);
}
