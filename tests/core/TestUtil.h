#pragma once

#include <map>
#include <string>
#include <vector>

namespace mobileops::test {

struct Result {
    int status = -1; // exit status, or 128+N for a signal
    std::string out, err;
};

// Run a program with extra environment variables; stdin is /dev/null.
Result run(const std::vector<std::string> &argv,
           const std::map<std::string, std::string> &env = {});

// A temporary directory removed (recursively) when the object goes away.
class TempDir {
public:
    TempDir();
    ~TempDir();
    const std::string &path() const { return _path; }
    std::string file(const std::string &name, const std::string &content) const;

private:
    std::string _path;
};

std::string dispatcher();
std::string fixtureDir(const std::string &name);

} // namespace mobileops::test
