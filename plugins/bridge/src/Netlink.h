// Links, addresses and routes through rtnetlink (libnl-route-3), in the network namespace
// of the calling thread: the bridge of each network, the veth pair of each attachment,
// and the container's side configured from inside its namespace. Never `ip`.
#pragma once

#include "Cidr.h"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

struct nl_sock;
struct nlmsgerr;
struct rtnl_link;
struct sockaddr_nl;

namespace mobileops::bridge {

struct LinkCounters {
    uint64_t rxBytes = 0, txBytes = 0, rxPackets = 0, txPackets = 0;
    uint64_t rxErrors = 0, txErrors = 0, rxDropped = 0, txDropped = 0;
};

// One NETLINK_ROUTE socket bound in the namespace of the thread that made it. Every call
// throws Error naming the link and the kernel's reason (e.g. "create the bridge
// `mobileops0`: File exists"). Not thread-safe; cheap to make.
class Netlink {
public:
    Netlink();
    ~Netlink();
    Netlink(const Netlink &) = delete;
    Netlink &operator=(const Netlink &) = delete;

    bool exists(const std::string &link);
    // Names of the links whose name starts with prefix.
    std::vector<std::string> links(const std::string &prefix);
    // Create the bridge when absent (a link of that name that is not a bridge: Error
    // MO_E_EXISTS), add each address (gateway/prefix) it lacks, bring it up.
    void ensureBridge(const std::string &name, const std::vector<Cidr> &addresses);
    // Delete a link; absent is fine.
    void remove(const std::string &link);
    // A veth pair: `hostEnd` in this namespace, enslaved to `bridge` and up; its peer
    // moved into the network namespace of `pid` and named `peerTemp` there (renamed by
    // configureInside). Both names at most 15 bytes.
    void createVeth(const std::string &hostEnd, const std::string &peerTemp,
                    const std::string &bridge, pid_t pid);
    void setUp(const std::string &link);
    void addAddress(const std::string &link, const Cidr &address);
    // A route to `destination` via `gateway` (default route: destination 0.0.0.0/0 or ::/0).
    void addRoute(const Cidr &destination, const std::string &gateway, const std::string &link);
    void rename(const std::string &from, const std::string &to);
    LinkCounters counters(const std::string &link);
    // The main table's routes of a family (AF_INET, AF_INET6), for overlap checks.
    std::vector<RouteInfo> routes(int family);

private:
    struct LinkPut {
        void operator()(rtnl_link *link) const;
    };
    using LinkRef = std::unique_ptr<rtnl_link, LinkPut>;

    // The link as the kernel has it now, empty when absent (throws only when the request
    // fails otherwise).
    LinkRef find(const std::string &link, const std::string &what);
    // The link, or Error MO_E_NOT_FOUND "<what>: no such link".
    LinkRef need(const std::string &link, const std::string &what);
    int linkIndex(const std::string &link, const std::string &what);
    int addAddressTo(int index, const Cidr &address);
    void bringUp(rtnl_link *link, const std::string &what);
    // Error "<what>: <the kernel's errno text> (<its extended ack>)" for a libnl result.
    [[noreturn]] void fail(const std::string &what, int nlError);
    // Before each request, so a stale errno is never reported.
    void clearKernelError();
    // libnl turns the kernel's errno into its own coarser codes ("Object exists"); this
    // keeps the errno and the kernel's extended ack message for the error text.
    static int onKernelError(sockaddr_nl *from, nlmsgerr *error, void *self);

    nl_sock *_sock = nullptr;
    int _kernelErrno = 0;
    std::string _kernelMessage;
};

// Run fn with the calling thread in the network namespace of `pid` (setns), then back in
// the one it was in, also when fn throws.
void inNetworkNamespaceOf(pid_t pid, const std::function<void()> &fn);

// Write a sysctl below /proc/sys/net (e.g. "ipv4/ip_forward", "1") of the calling
// thread's namespace; throws naming the key.
void setNetSysctl(const std::string &key, const std::string &value);

} // namespace mobileops::bridge
