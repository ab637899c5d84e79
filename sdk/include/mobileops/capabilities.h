/*
 * mobileops SDK: the Linux capabilities by number (linux/capability.h, up to
 * CAP_CHECKPOINT_RESTORE), without the CAP_ prefix, as the runtime spec and the
 * VirtualRoot spec write them ("NET_BIND_SERVICE"). Shared by the core, which checks
 * names, and the runtimes, which apply them.
 */
#ifndef MOBILEOPS_CAPABILITIES_H
#define MOBILEOPS_CAPABILITIES_H

#define MO_CAPABILITY_COUNT 41

#if defined(__GNUC__)
__attribute__((unused))
#endif
static const char *const mo_capability_names[MO_CAPABILITY_COUNT] = {
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
};

#endif
