// Network tests never touch the machine's own interfaces, routes or firewall: the test
// body runs on a thread of its own that first unshares a fresh network namespace (only
// that thread is in it). Everything made there (bridges, veths, nftables tables) goes
// with the namespace when the thread ends, also when the test fails half-way.
#pragma once

#include <gtest/gtest.h>

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <thread>

namespace mobileops::test {

// Run fn in a new network namespace on a new thread; rethrows what fn threw. gtest
// assertions inside fn work (they are thread-safe on Linux); a fatal one ends fn only.
inline void inFreshNetns(const std::function<void()> &fn) {
    std::exception_ptr failed;
    std::thread t([&] {
        if (::unshare(CLONE_NEWNET) != 0) {
            ADD_FAILURE() << "unshare(CLONE_NEWNET): " << std::strerror(errno);
            return;
        }
        try {
            fn();
        } catch (...) {
            failed = std::current_exception();
        }
    });
    t.join();
    if (failed) std::rethrow_exception(failed);
}

#define REQUIRE_ROOT_FOR_NETNS()                                                                   \
    do {                                                                                           \
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";                   \
    } while (0)

} // namespace mobileops::test
