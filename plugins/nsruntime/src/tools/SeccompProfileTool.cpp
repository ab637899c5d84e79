// mobileops-seccomp-profile: print the namespace runtime's default seccomp profile, or
// check a profile file the way `container create` will.
//
//   mobileops-seccomp-profile                 the default profile (docker's JSON form)
//   mobileops-seccomp-profile --oci [OPTS]    resolved for a container (OCI linux.seccomp),
//                                             as crun and runc take it
//   mobileops-seccomp-profile --check FILE    validate FILE; exit 1 naming the bad field
//   OPTS: --cap-add CAP, --cap-drop CAP, --privileged (the container's capability set)
#include "Capabilities.h"
#include "Errors.h"
#include "Seccomp.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace mobileops::nsruntime;

namespace {

int usage() {
    std::fputs("usage: mobileops-seccomp-profile [--oci [--cap-add CAP]... [--cap-drop CAP]... "
               "[--privileged]] | --check FILE\n",
               stderr);
    return 2;
}

} // namespace

int main(int argc, char **argv) {
    bool oci = false, privileged = false;
    std::string check;
    std::vector<std::string> add, drop;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--oci")
            oci = true;
        else if (a == "--privileged")
            privileged = true;
        else if (a == "--cap-add" && i + 1 < argc)
            add.push_back(argv[++i]);
        else if (a == "--cap-drop" && i + 1 < argc)
            drop.push_back(argv[++i]);
        else if (a == "--check" && i + 1 < argc)
            check = argv[++i];
        else
            return usage();
    }
    try {
        if (!check.empty()) {
            std::ifstream in(check);
            if (!in) throw sysError(quote(check), errno);
            std::stringstream text;
            text << in.rdbuf();
            auto profile = nlohmann::json::parse(text.str(), nullptr, false);
            if (profile.is_discarded()) throw Error(MO_E_INVALID, quote(check) + " is not JSON");
            checkSeccompProfile(profile, "seccomp profile " + quote(check));
            std::printf("%s: ok\n", check.c_str());
            return 0;
        }
        if (!oci) {
            std::cout << defaultSeccompProfile().dump(2) << "\n";
            return 0;
        }
        uint64_t base = privileged ? allCapabilities() : defaultCapabilities();
        uint64_t caps = applyCapabilityChanges(base, add, drop, "");
        std::cout
            << resolveSeccompProfile(defaultSeccompProfile(), caps, "the default profile").dump(2)
            << "\n";
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "mobileops-seccomp-profile: %s\n", e.what());
        return 1;
    }
}
