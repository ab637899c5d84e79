#include "Netlink.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mobileops::bridge {

using common::Error;
using common::quote;
using common::sysError;

namespace {

template <typename T, void (*Put)(T *)> struct Putter {
    void operator()(T *p) const {
        if (p) Put(p);
    }
};
using CacheRef = std::unique_ptr<nl_cache, Putter<nl_cache, nl_cache_free>>;
using AddrRef = std::unique_ptr<nl_addr, Putter<nl_addr, nl_addr_put>>;
using RtAddrRef = std::unique_ptr<rtnl_addr, Putter<rtnl_addr, rtnl_addr_put>>;
using RouteRef = std::unique_ptr<rtnl_route, Putter<rtnl_route, rtnl_route_put>>;

using common::Fd;

// The kernel's own rule (dev_valid_name), so a bad name fails here with a clear message
// instead of as "Invalid argument" from the kernel.
void checkName(const std::string &name) {
    std::string reason;
    if (name.empty())
        reason = "empty";
    else if (name.size() > IFNAMSIZ - 1)
        reason = "longer than " + std::to_string(IFNAMSIZ - 1) + " bytes";
    else if (name == "." || name == "..")
        reason = "not a name";
    else if (std::any_of(name.begin(), name.end(), [](unsigned char c) {
                 return c == '/' || c == ':' || c == '\0' || std::isspace(c);
             }))
        reason = "contains `/`, `:` or a space";
    if (!reason.empty())
        throw Error(MO_E_INVALID, "invalid link name " + quote(name) + ": " + reason);
}

bool validName(const std::string &name) {
    try {
        checkName(name);
        return true;
    } catch (const Error &) {
        return false;
    }
}

AddrRef toNlAddr(const Cidr &c) {
    AddrRef a(nl_addr_build(c.family, c.addr.data(), c.family == AF_INET ? 4 : 16));
    if (!a) throw Error(-ENOMEM, "build the address " + c.str() + ": out of memory");
    nl_addr_set_prefixlen(a.get(), c.prefix);
    return a;
}

std::string linkType(rtnl_link *link) {
    const char *type = rtnl_link_get_type(link);
    return type ? type : "device";
}

// A fixed, random, locally administered unicast address. A bridge without one takes the
// lowest address of its ports and changes it as containers come and go, which leaves
// stale neighbour entries for the gateway in every container.
AddrRef randomMac() {
    uint8_t mac[6];
    if (::getrandom(mac, sizeof mac, 0) != static_cast<ssize_t>(sizeof mac)) {
        int err = errno;
        throw sysError("pick the bridge's MAC address: getrandom", err);
    }
    mac[0] = static_cast<uint8_t>((mac[0] & 0xfe) | 0x02);
    AddrRef a(nl_addr_build(AF_LLC, mac, sizeof mac));
    if (!a) throw Error(-ENOMEM, "build a MAC address: out of memory");
    return a;
}

} // namespace

void Netlink::LinkPut::operator()(rtnl_link *link) const {
    if (link) rtnl_link_put(link);
}

Netlink::Netlink() {
    _sock = nl_socket_alloc();
    if (!_sock) throw Error(-ENOMEM, "open a netlink socket: out of memory");
    nl_socket_modify_err_cb(_sock, NL_CB_CUSTOM, &Netlink::onKernelError, this);
    if (int err = nl_connect(_sock, NETLINK_ROUTE); err < 0) {
        nl_socket_free(_sock);
        throw Error(MO_E_INTERNAL, std::string("open a netlink socket: ") + nl_geterror(err));
    }
    // Extended acks carry the kernel's reason ("Nexthop has invalid gateway"); capped acks
    // keep our request out of the reply. Older kernels lack both: then errno alone.
    int one = 1;
    int fd = nl_socket_get_fd(_sock);
    ::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
    ::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
}

Netlink::~Netlink() {
    if (_sock) nl_socket_free(_sock);
}

int Netlink::onKernelError(sockaddr_nl *, nlmsgerr *error, void *self) {
    auto *nl = static_cast<Netlink *>(self);
    nl->_kernelErrno = -error->error;
    nl->_kernelMessage.clear();
    // libnl hands us the payload of the NLMSG_ERROR message; its header sits just before.
    auto *hdr = reinterpret_cast<nlmsghdr *>(reinterpret_cast<char *>(error) - NLMSG_HDRLEN);
    if (hdr->nlmsg_flags & NLM_F_ACK_TLVS) {
        char *start = reinterpret_cast<char *>(&error->msg);
        start += (hdr->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsghdr)
                                                   : NLMSG_ALIGN(error->msg.nlmsg_len);
        char *end = reinterpret_cast<char *>(hdr) + hdr->nlmsg_len;
        if (start < end) {
            nlattr *msg = nla_find(reinterpret_cast<nlattr *>(start), static_cast<int>(end - start),
                                   NLMSGERR_ATTR_MSG);
            if (msg && nla_len(msg) > 0) {
                auto *text = static_cast<const char *>(nla_data(msg));
                nl->_kernelMessage.assign(text, ::strnlen(text, static_cast<size_t>(nla_len(msg))));
            }
        }
    }
    return NL_STOP;
}

void Netlink::clearKernelError() {
    _kernelErrno = 0;
    _kernelMessage.clear();
}

void Netlink::fail(const std::string &what, int nlError) {
    if (_kernelErrno > 0) {
        std::string message = what + ": " + std::strerror(_kernelErrno);
        if (!_kernelMessage.empty()) message += " (" + _kernelMessage + ")";
        throw Error(-_kernelErrno, message);
    }
    throw Error(nlError == -NLE_NOMEM ? -ENOMEM : MO_E_INTERNAL,
                what + ": " + nl_geterror(nlError));
}

Netlink::LinkRef Netlink::find(const std::string &link, const std::string &what) {
    checkName(link);
    clearKernelError();
    rtnl_link *found = nullptr;
    int err = rtnl_link_get_kernel(_sock, 0, link.c_str(), &found);
    if (err < 0) {
        // rtnl_link_get_kernel installs an error handler of its own (ours never runs), so
        // only libnl's translation of ENODEV tells that the link is absent.
        if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND || _kernelErrno == ENODEV) return {};
        fail(what, err);
    }
    return LinkRef(found);
}

Netlink::LinkRef Netlink::need(const std::string &link, const std::string &what) {
    LinkRef found = find(link, what);
    if (!found) throw Error(MO_E_NOT_FOUND, what + ": no such link");
    return found;
}

int Netlink::linkIndex(const std::string &link, const std::string &what) {
    return rtnl_link_get_ifindex(need(link, what).get());
}

bool Netlink::exists(const std::string &link) {
    return validName(link) && find(link, "look up the link " + quote(link)) != nullptr;
}

std::vector<std::string> Netlink::links(const std::string &prefix) {
    clearKernelError();
    nl_cache *raw = nullptr;
    if (int err = rtnl_link_alloc_cache(_sock, AF_UNSPEC, &raw); err < 0)
        fail("list the links", err);
    CacheRef cache(raw);
    std::vector<std::string> names;
    for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
        const char *name = rtnl_link_get_name(reinterpret_cast<rtnl_link *>(o));
        if (name && std::string_view(name).starts_with(prefix)) names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    return names;
}

void Netlink::ensureBridge(const std::string &name, const std::vector<Cidr> &addresses) {
    std::string what = "create the bridge " + quote(name);
    LinkRef link = find(name, what);
    if (!link) {
        LinkRef bridge(rtnl_link_bridge_alloc());
        if (!bridge) throw Error(-ENOMEM, what + ": out of memory");
        rtnl_link_set_name(bridge.get(), name.c_str());
        rtnl_link_set_addr(bridge.get(), randomMac().get());
        clearKernelError();
        int err = rtnl_link_add(_sock, bridge.get(), NLM_F_CREATE | NLM_F_EXCL);
        // EEXIST: a parallel command made it first; use it when it is a bridge.
        if (err < 0 && _kernelErrno != EEXIST) fail(what, err);
        link = need(name, what);
    }
    if (linkType(link.get()) != "bridge")
        throw Error(MO_E_EXISTS, what + ": a link of that name exists and is a " +
                                     linkType(link.get()) + ", not a bridge");
    int index = rtnl_link_get_ifindex(link.get());
    for (const Cidr &address : addresses) {
        int err = addAddressTo(index, address);
        if (err < 0 && _kernelErrno != EEXIST)
            fail("add the address " + address.str() + " to the bridge " + quote(name), err);
    }
    bringUp(link.get(), "bring up the bridge " + quote(name));
}

void Netlink::remove(const std::string &link) {
    if (!validName(link)) return;
    LinkRef l(rtnl_link_alloc());
    if (!l) throw Error(-ENOMEM, "delete the link " + quote(link) + ": out of memory");
    rtnl_link_set_name(l.get(), link.c_str());
    clearKernelError();
    int err = rtnl_link_delete(_sock, l.get());
    if (err < 0 && _kernelErrno != ENODEV && err != -NLE_OBJ_NOTFOUND)
        fail("delete the link " + quote(link), err);
}

void Netlink::createVeth(const std::string &hostEnd, const std::string &peerTemp,
                         const std::string &bridge, pid_t pid) {
    checkName(hostEnd);
    checkName(peerTemp);
    std::string what = "create the veth pair " + quote(hostEnd) + " (peer " + quote(peerTemp) +
                       " in the network namespace of pid " + std::to_string(pid) + ")";
    LinkRef br = find(bridge, what);
    if (!br) throw Error(MO_E_NOT_FOUND, what + ": no such bridge " + quote(bridge));

    LinkRef veth(rtnl_link_veth_alloc());
    if (!veth) throw Error(-ENOMEM, what + ": out of memory");
    rtnl_link_set_name(veth.get(), hostEnd.c_str());
    // Master and up in the creating request: the kernel then makes all of it or nothing,
    // so a failure never leaves a half-made pair behind.
    rtnl_link_set_master(veth.get(), rtnl_link_get_ifindex(br.get()));
    rtnl_link_set_flags(veth.get(), IFF_UP);
    {
        LinkRef peer(rtnl_link_veth_get_peer(veth.get()));
        rtnl_link_set_name(peer.get(), peerTemp.c_str());
        rtnl_link_set_ns_pid(peer.get(), pid);
    }
    clearKernelError();
    if (int err = rtnl_link_add(_sock, veth.get(), NLM_F_CREATE | NLM_F_EXCL); err < 0)
        fail(what, err);
}

void Netlink::bringUp(rtnl_link *link, const std::string &what) {
    LinkRef change(rtnl_link_alloc());
    if (!change) throw Error(-ENOMEM, what + ": out of memory");
    rtnl_link_set_flags(change.get(), IFF_UP);
    clearKernelError();
    if (int err = rtnl_link_change(_sock, link, change.get(), 0); err < 0) fail(what, err);
}

void Netlink::setUp(const std::string &link) {
    std::string what = "bring up " + quote(link);
    bringUp(need(link, what).get(), what);
}

int Netlink::addAddressTo(int index, const Cidr &address) {
    RtAddrRef addr(rtnl_addr_alloc());
    if (!addr) return -NLE_NOMEM;
    rtnl_addr_set_ifindex(addr.get(), index);
    rtnl_addr_set_family(addr.get(), address.family);
    if (int err = rtnl_addr_set_local(addr.get(), toNlAddr(address).get()); err < 0) return err;
    rtnl_addr_set_prefixlen(addr.get(), address.prefix);
    if (address.family == AF_INET && address.prefix < 31) {
        Cidr broadcast = address.network();
        for (int bit = address.prefix; bit < 32; ++bit)
            broadcast.addr[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
        if (int err = rtnl_addr_set_broadcast(addr.get(), toNlAddr(broadcast).get()); err < 0)
            return err;
    }
    // Duplicate address detection would keep the address tentative (unusable) for a second
    // or more; these addresses are handed out by our own allocator, so it would find
    // nothing.
    if (address.family == AF_INET6) rtnl_addr_set_flags(addr.get(), IFA_F_NODAD);
    clearKernelError();
    return rtnl_addr_add(_sock, addr.get(), NLM_F_EXCL);
}

void Netlink::addAddress(const std::string &link, const Cidr &address) {
    std::string what = "add the address " + address.str() + " to " + quote(link);
    int err = addAddressTo(linkIndex(link, what), address);
    if (err < 0) fail(what, err);
}

void Netlink::addRoute(const Cidr &destination, const std::string &gateway,
                       const std::string &link) {
    std::string what = "add the route to " + destination.network().str() + " via " + gateway +
                       " on " + quote(link);
    Cidr via = Cidr::address(gateway, "gateway");
    if (via.family != destination.family)
        throw Error(MO_E_INVALID, "invalid gateway " + quote(gateway) +
                                      ": not of the family of the destination " +
                                      destination.str());
    int index = linkIndex(link, what);

    RouteRef route(rtnl_route_alloc());
    if (!route) throw Error(-ENOMEM, what + ": out of memory");
    rtnl_route_set_family(route.get(), static_cast<uint8_t>(destination.family));
    rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
    rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
    rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
    rtnl_route_set_type(route.get(), RTN_UNICAST);
    if (int err = rtnl_route_set_dst(route.get(), toNlAddr(destination.network()).get()); err < 0)
        fail(what, err);
    rtnl_nexthop *hop = rtnl_route_nh_alloc();
    if (!hop) throw Error(-ENOMEM, what + ": out of memory");
    rtnl_route_nh_set_ifindex(hop, index);
    rtnl_route_nh_set_gateway(hop, toNlAddr(via).get());
    rtnl_route_add_nexthop(route.get(), hop); // the route owns it now
    clearKernelError();
    if (int err = rtnl_route_add(_sock, route.get(), NLM_F_EXCL); err < 0) fail(what, err);
}

void Netlink::rename(const std::string &from, const std::string &to) {
    std::string what = "rename " + quote(from) + " to " + quote(to);
    checkName(to);
    LinkRef link = need(from, what);
    LinkRef change(rtnl_link_alloc());
    if (!change) throw Error(-ENOMEM, what + ": out of memory");
    rtnl_link_set_name(change.get(), to.c_str());
    clearKernelError();
    if (int err = rtnl_link_change(_sock, link.get(), change.get(), 0); err < 0) fail(what, err);
}

LinkCounters Netlink::counters(const std::string &link) {
    LinkRef l = need(link, "read the counters of " + quote(link));
    auto stat = [&](rtnl_link_stat_id_t id) { return rtnl_link_get_stat(l.get(), id); };
    LinkCounters c;
    c.rxBytes = stat(RTNL_LINK_RX_BYTES);
    c.txBytes = stat(RTNL_LINK_TX_BYTES);
    c.rxPackets = stat(RTNL_LINK_RX_PACKETS);
    c.txPackets = stat(RTNL_LINK_TX_PACKETS);
    c.rxErrors = stat(RTNL_LINK_RX_ERRORS);
    c.txErrors = stat(RTNL_LINK_TX_ERRORS);
    c.rxDropped = stat(RTNL_LINK_RX_DROPPED);
    c.txDropped = stat(RTNL_LINK_TX_DROPPED);
    return c;
}

std::vector<RouteInfo> Netlink::routes(int family) {
    if (family != AF_INET && family != AF_INET6)
        throw Error(MO_E_INVALID,
                    "list the routes: unknown address family " + std::to_string(family));
    clearKernelError();
    nl_cache *raw = nullptr;
    if (int err = rtnl_link_alloc_cache(_sock, AF_UNSPEC, &raw); err < 0)
        fail("list the routes", err);
    CacheRef links(raw);
    raw = nullptr;
    clearKernelError();
    if (int err = rtnl_route_alloc_cache(_sock, family, 0, &raw); err < 0)
        fail("list the routes", err);
    CacheRef cache(raw);

    std::vector<RouteInfo> out;
    for (nl_object *o = nl_cache_get_first(raw); o; o = nl_cache_get_next(o)) {
        auto *route = reinterpret_cast<rtnl_route *>(o);
        if (rtnl_route_get_table(route) != RT_TABLE_MAIN ||
            rtnl_route_get_type(route) != RTN_UNICAST || rtnl_route_get_family(route) != family)
            continue;
        RouteInfo info;
        info.destination.family = family;
        if (nl_addr *dst = rtnl_route_get_dst(route)) {
            size_t len = std::min<size_t>(nl_addr_get_len(dst), info.destination.addr.size());
            std::memcpy(info.destination.addr.data(), nl_addr_get_binary_addr(dst), len);
            info.destination.prefix = static_cast<int>(nl_addr_get_prefixlen(dst));
        }
        if (rtnl_route_get_nnexthops(route) > 0) {
            char name[IFNAMSIZ] = {};
            int index = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0));
            if (rtnl_link_i2name(links.get(), index, name, sizeof name)) info.device = name;
        }
        out.push_back(std::move(info));
    }
    return out;
}

void inNetworkNamespaceOf(pid_t pid, const std::function<void()> &fn) {
    std::string what = "enter the network namespace of pid " + std::to_string(pid);
    // The calling thread's namespace, not /proc/self's (the main thread's): callers may
    // run on a thread that unshared a namespace of its own.
    Fd home(::open(("/proc/self/task/" + std::to_string(::gettid()) + "/ns/net").c_str(),
                   O_RDONLY | O_CLOEXEC));
    if (home.fd < 0) {
        int err = errno;
        throw sysError(what + ": open the current namespace", err);
    }
    Fd target(::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (target.fd < 0) {
        int err = errno;
        if (err == ENOENT) throw Error(MO_E_NOT_FOUND, what + ": no such process");
        throw sysError(what, err);
    }
    if (::setns(target.fd, CLONE_NEWNET) != 0) {
        int err = errno;
        throw sysError(what, err);
    }
    auto goHome = [&] {
        if (::setns(home.fd, CLONE_NEWNET) == 0) return;
        // Carrying on would configure the host's links inside a container (or the other
        // way round); nothing can recover from that safely.
        std::fprintf(stderr, "mobileops: return from the network namespace of pid %d: %s\n",
                     static_cast<int>(pid), std::strerror(errno));
        std::abort();
    };
    try {
        fn();
    } catch (...) {
        goHome();
        throw;
    }
    goHome();
}

void setNetSysctl(const std::string &key, const std::string &value) {
    std::string name = "net/" + key;
    bool valid = !key.empty() && key.front() != '/' && key.back() != '/' &&
                 key.find('\0') == std::string::npos;
    for (size_t start = 0; valid && start <= key.size();) {
        size_t end = key.find('/', start);
        if (end == std::string::npos) end = key.size();
        std::string part = key.substr(start, end - start);
        valid = !part.empty() && part != "." && part != "..";
        start = end + 1;
    }
    if (!valid)
        throw Error(MO_E_INVALID, "invalid sysctl " + quote(name) + ": not a key below net/");
    // /proc/sys/net resolves against the namespace of the opening thread (unlike /proc/net,
    // which is the main thread's), so this writes the caller's namespace.
    std::string what = "set the sysctl " + quote(name) + " to " + quote(value);
    Fd fd(::open(("/proc/sys/" + name).c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.fd < 0) {
        int err = errno;
        throw sysError(what, err);
    }
    size_t done = 0;
    while (done < value.size()) {
        ssize_t n = ::write(fd.fd, value.data() + done, value.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            throw sysError(what, err);
        }
        done += static_cast<size_t>(n);
    }
}

} // namespace mobileops::bridge
