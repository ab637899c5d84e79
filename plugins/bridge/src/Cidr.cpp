#include "Cidr.h"

#include <mobileops/abi.h>
#include <mobileops/common/Errors.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>

namespace mobileops::bridge {

using common::Error;
using common::quote;

namespace {

int bits(int family) { return family == AF_INET ? 32 : 128; }
size_t bytes(int family) { return family == AF_INET ? 4 : 16; }

Error invalid(const std::string &what, const std::string &text, const std::string &reason) {
    return Error(MO_E_INVALID, "invalid " + what + " " + quote(text) + ": " + reason);
}

std::array<uint8_t, 16> masked(const std::array<uint8_t, 16> &addr, int prefix) {
    std::array<uint8_t, 16> out{};
    for (int i = 0; i < 16; ++i) {
        int keep = std::clamp(prefix - i * 8, 0, 8);
        out[i] = keep == 0 ? 0 : static_cast<uint8_t>(addr[i] & (0xff << (8 - keep)));
    }
    return out;
}

Cidr parseAddress(const std::string &addr, const std::string &text, const std::string &what) {
    Cidr c;
    if (::inet_pton(AF_INET, addr.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET;
    } else if (::inet_pton(AF_INET6, addr.c_str(), c.addr.data()) == 1) {
        c.family = AF_INET6;
    } else {
        throw invalid(what, text, "not an IPv4 or IPv6 address");
    }
    c.prefix = bits(c.family);
    return c;
}

} // namespace

Cidr Cidr::parse(const std::string &text, const std::string &what) {
    auto slash = text.find('/');
    Cidr c = parseAddress(text.substr(0, slash), text, what);
    if (slash == std::string::npos) return c;
    std::string p = text.substr(slash + 1);
    int max = bits(c.family);
    // Digits only (no sign, no spaces) and few of them, so stoi never overflows.
    if (p.empty() || p.size() > 3 ||
        !std::all_of(p.begin(), p.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        throw invalid(what, text,
                      "prefix " + quote(p) + " is not a number from 0 to " + std::to_string(max));
    int prefix = std::stoi(p);
    if (prefix > max)
        throw invalid(what, text,
                      "prefix " + std::to_string(prefix) + " is longer than " +
                          std::to_string(max));
    c.prefix = prefix;
    return c;
}

Cidr Cidr::address(const std::string &text, const std::string &what) {
    if (text.find('/') != std::string::npos)
        throw invalid(what, text, "expected an address without a prefix");
    return parseAddress(text, text, what);
}

std::string Cidr::addrStr() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (!::inet_ntop(family, addr.data(), buf, sizeof buf)) return "?";
    return buf;
}

std::string Cidr::str() const { return addrStr() + "/" + std::to_string(prefix); }

Cidr Cidr::network() const {
    Cidr c = *this;
    c.addr = masked(addr, prefix);
    return c;
}

bool Cidr::contains(const Cidr &other) const {
    return family == other.family && other.prefix >= prefix &&
           masked(other.addr, prefix) == masked(addr, prefix);
}

bool Cidr::overlaps(const Cidr &other) const {
    if (family != other.family) return false;
    int p = std::min(prefix, other.prefix);
    return masked(addr, p) == masked(other.addr, p);
}

uint64_t Cidr::hostCount() const {
    constexpr uint64_t cap = uint64_t{1} << 32;
    int hostBits = bits(family) - prefix;
    // /31 and /127 are point-to-point links with both addresses usable (RFC 3021, RFC
    // 6164); /32 and /128 hold only the address itself.
    if (hostBits <= 1) return hostBits == 1 ? 2 : 1;
    if (hostBits > 32) return cap;
    uint64_t size = uint64_t{1} << hostBits;
    // IPv4 loses the network and broadcast addresses, IPv6 only the subnet-router
    // anycast address (the all-zero host).
    return std::min(family == AF_INET ? size - 2 : size - 1, cap);
}

std::optional<Cidr> Cidr::host(uint64_t n) const {
    if (n == 0 || n > hostCount()) return std::nullopt;
    Cidr c = network();
    uint64_t offset = bits(family) - prefix <= 1 ? n - 1 : n;
    // Add offset to the address as a big-endian number; it never carries past the prefix
    // because it is below the subnet's size.
    for (size_t i = bytes(family); i-- > 0 && offset != 0;) {
        uint64_t sum = c.addr[i] + (offset & 0xff);
        c.addr[i] = static_cast<uint8_t>(sum);
        offset = (offset >> 8) + (sum >> 8);
    }
    return c;
}

} // namespace mobileops::bridge
