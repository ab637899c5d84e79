#include "Reference.h"

#include "Paths.h"

#include <mobileops/common/Errors.h>

#include <arpa/inet.h>

#include <algorithm>

namespace mobileops::storage {

using common::quote;

namespace {

constexpr std::string_view defaultRegistry = "docker.io";

bool isLower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isWord(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// One path component of a repository: [a-z0-9]+ ((\.|_|__|-+)[a-z0-9]+)*; "" when it is
// fine, else why not.
std::string componentProblem(const std::string &c) {
    if (c.empty()) return "has an empty path component";
    for (char ch : c)
        if (ch >= 'A' && ch <= 'Z') return "must be lowercase";
    if (!isLower(c.front()) || !isLower(c.back()))
        return "component " + quote(c) + " must start and end with a letter or digit";
    for (size_t i = 0; i < c.size();) {
        if (isLower(c[i])) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < c.size() && !isLower(c[j])) ++j;
        std::string sep = c.substr(i, j - i);
        bool ok = sep == "." || sep == "_" || sep == "__" ||
                  sep.find_first_not_of('-') == std::string::npos;
        if (!ok) {
            for (char ch : sep)
                if (ch != '.' && ch != '_' && ch != '-')
                    return "has an invalid character " + quote(std::string(1, ch));
            return "component " + quote(c) + " has the separator " + quote(sep) +
                   " (one `.`, `_`, `__` or dashes)";
        }
        i = j;
    }
    return "";
}

// host[:port], host a DNS name or an IPv4 address, or [ipv6][:port].
bool validRegistry(const std::string &r) {
    std::string host = r, port;
    if (!r.empty() && r.front() == '[') {
        size_t close = r.find(']');
        if (close == std::string::npos) return false;
        host = r.substr(1, close - 1);
        in6_addr a6;
        if (::inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
        std::string rest = r.substr(close + 1);
        if (rest.empty()) return true;
        if (rest.front() != ':') return false;
        port = rest.substr(1);
    } else {
        size_t colon = r.find(':');
        if (colon != std::string::npos) {
            host = r.substr(0, colon);
            port = r.substr(colon + 1);
            if (port.empty()) return false;
        }
        if (host.empty()) return false;
        for (char c : host)
            if (!isWord(c) && c != '.' && c != '-') return false;
        if (host.front() == '.' || host.front() == '-' || host.back() == '.' || host.back() == '-')
            return false;
    }
    if (!port.empty() || r.find(':') != std::string::npos) {
        if (port.empty() || port.size() > 5) return false;
        for (char c : port)
            if (c < '0' || c > '9') return false;
    }
    return true;
}

} // namespace

Reference Reference::parse(const std::string &text) {
    auto fail = [&](const std::string &why) {
        return sdk::Error(MO_E_INVALID, "reference " + quote(text) + ": " + why);
    };
    if (text.empty()) throw sdk::Error(MO_E_INVALID, "image reference is empty");
    for (unsigned char c : text)
        if (c <= ' ' || c >= 0x7f) throw fail("contains a space, control or non-ASCII character");

    Reference ref;
    std::string rest = text;
    if (size_t at = rest.find('@'); at != std::string::npos) {
        ref.digest = rest.substr(at + 1);
        rest.resize(at);
        if (ref.digest.compare(0, 7, "sha256:") != 0)
            throw fail("digest " + quote(ref.digest) + " is not a sha256 digest");
        try {
            digestHex(ref.digest);
        } catch (const sdk::Error &e) {
            throw fail(e.what());
        }
    }
    size_t slash = rest.rfind('/');
    size_t colon = rest.rfind(':');
    if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
        ref.tag = rest.substr(colon + 1);
        rest.resize(colon);
        bool ok = !ref.tag.empty() && ref.tag.size() <= 128 && isWord(ref.tag.front());
        for (char c : ref.tag) ok = ok && (isWord(c) || c == '.' || c == '-');
        if (!ok)
            throw fail("tag " + quote(ref.tag) +
                       " must be 1-128 of [A-Za-z0-9_.-], not starting with `.` or `-`");
    }
    if (rest.empty()) throw fail("no repository name");

    size_t first = rest.find('/');
    std::string head = rest.substr(0, first);
    if (first != std::string::npos &&
        (head.find('.') != std::string::npos || head.find(':') != std::string::npos ||
         head == "localhost" || (!head.empty() && head.front() == '['))) {
        if (!validRegistry(head)) throw fail("registry " + quote(head) + " is not host[:port]");
        ref.registry = head;
        ref.repository = rest.substr(first + 1);
    } else {
        ref.registry = defaultRegistry;
        ref.repository = rest;
    }
    if (ref.registry == "index.docker.io" || ref.registry == "registry-1.docker.io")
        ref.registry = defaultRegistry;
    if (ref.registry == defaultRegistry && ref.repository.find('/') == std::string::npos)
        ref.repository = "library/" + ref.repository;

    for (size_t p = 0;;) {
        size_t q = ref.repository.find('/', p);
        std::string why = componentProblem(ref.repository.substr(p, q - p));
        if (!why.empty()) throw fail("repository " + quote(ref.repository) + " " + why);
        if (q == std::string::npos) break;
        p = q + 1;
    }
    if (ref.name().size() > 255) throw fail("name is longer than 255 characters");
    if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
    return ref;
}

std::string Reference::name() const { return registry + "/" + repository; }

std::string Reference::str() const {
    std::string s = name();
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
}

std::string Reference::familiar() const {
    constexpr std::string_view library = "library/";
    if (registry != defaultRegistry || repository.compare(0, library.size(), library) != 0 ||
        repository.find('/', library.size()) != std::string::npos)
        return str();
    std::string s = repository.substr(library.size());
    if (!tag.empty()) s += ":" + tag;
    if (!digest.empty()) s += "@" + digest;
    return s;
}

bool Reference::isLocalhost() const {
    std::string host = registry;
    if (!host.empty() && host.front() == '[') {
        host = host.substr(1, host.find(']') - 1);
        in6_addr a6, loop6 = IN6ADDR_LOOPBACK_INIT;
        return ::inet_pton(AF_INET6, host.c_str(), &a6) == 1 &&
               std::equal(a6.s6_addr, a6.s6_addr + 16, loop6.s6_addr);
    }
    host = host.substr(0, host.find(':'));
    if (host == "localhost") return true;
    in_addr a4;
    return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

} // namespace mobileops::storage
