/* The resources setrlimit(2) knows, by the names mobileops uses for them ("nofile" for
 * RLIMIT_NOFILE). Plain C: the micro-VM guest's init includes it too. */
#ifndef MOBILEOPS_COMMON_RLIMITS_H
#define MOBILEOPS_COMMON_RLIMITS_H

#include <string.h>
#include <sys/resource.h>

struct mo_rlimit_name {
    const char *name;
    int resource;
};

static const struct mo_rlimit_name mo_rlimit_names[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

/* The resource named `name` (lower case, without RLIMIT_), -1 when there is none. */
static inline int mo_rlimit_resource(const char *name) {
    for (size_t i = 0; i < sizeof mo_rlimit_names / sizeof mo_rlimit_names[0]; i++)
        if (strcmp(name, mo_rlimit_names[i].name) == 0) return mo_rlimit_names[i].resource;
    return -1;
}

#endif
