/*
 * The contract between the krun plugin's qemu backend (host, C++) and the guest init
 * (guest/init.c, static C): how a job gets into the micro-VM and how its result gets out.
 * Nothing about the job travels on the kernel command line (unknown words there end up in
 * init's argv and environment).
 *
 * Devices (qemu -machine microvm, virtio over MMIO):
 *   9p share  tag MO_TAG_JOB   the VM's own host directory, read-write: the job file
 *                              (MO_JOB_FILE) in, the exit file (MO_EXIT_FILE) out
 *   9p share  tag MO_TAG_ROOT  the container's root filesystem (flattened image or a
 *                              directory); read-only or read-write as the job says
 *   9p share  tag "mo-vol<N>"  volume N (N from 0), mounted where the job says
 *   virtio-serial ports        virtserialports, found by name (MO_PORT_*): the guest's
 *                              /sys/class/virtio-ports/<dev>/name holds the name and
 *                              /dev/<dev> is the port. Not virtconsoles, whose output
 *                              qemu drops when the host's reader lags: a port's writer
 *                              waits instead (flow control).
 *     MO_PORT_STDOUT           the program's stdout (not a terminal)
 *     MO_PORT_STDERR           the program's stderr
 *     MO_PORT_CONTROL          control, lines both ways (see the end below). Host to
 *                              guest: "signal <N>\n" forwards signal N to the program's
 *                              process group. End of file or a hangup: the host closed
 *                              its end, and nothing more will come.
 *   serial ttyS0               the kernel's console, and init's own messages and the
 *                              exit line (MO_EXIT_MARKER "<code>\n")
 *
 * The job file: records, each "<key> <length>\n<length bytes>\n", in this order of
 * meaning (keys may repeat where noted):
 *   arg      one argument of the program (repeated; argv[0] first; at least one)
 *   env      "NAME=value" (repeated)
 *   cwd      working directory inside the root (default "/")
 *   user     "<uid>:<gid>" (default "0:0")
 *   groups   supplementary gids, space-separated (optional)
 *   rlimit   "<resource name> <soft> <hard>", names as in RLIMIT_NOFILE -> "nofile",
 *            -1 for unlimited (repeated)
 *   umask    the program's file mode creation mask, octal (default "0022")
 *   caps     "<bounding> <effective> <permitted> <inheritable> <ambient>", each a hex
 *            mask (bit N: capability N); the program's capability sets, applied around
 *            the uid change as the namespace runtime does (optional: without it the
 *            program keeps every capability of its user)
 *   nonewprivs "1": the program runs with no_new_privs (optional)
 *   seccomp  "<flags> <hex>": a seccomp filter (classic BPF, 8 bytes per instruction,
 *            hex-encoded) and its SECCOMP_FILTER_FLAG_* flags, installed last before
 *            the exec (before the capability changes when there is no no_new_privs)
 *   sysctl   "<key> <value>" written to /proc/sys/<key with `.` as `/`> before the
 *            program starts (repeated)
 *   hostname the guest's hostname
 *   rootro   "1": mount the root read-only, "0": read-write (default "0")
 *   mount    "<tag> <path> <ro|rw>" a volume share and where it goes (repeated)
 *   tty      "1" when the program's stdin/stdout should be a terminal (not yet used)
 *
 * The result: the program's exit status as a shell reports it (0-255 for an exit, 128+N
 * for death by signal N; 127 when the program was not found, 126 when it could not be
 * executed), written as "<code>\n" ("<code> signal <N>\n" when signal N killed it, so a
 * program that exited 143 and one killed by SIGTERM stay apart) to MO_EXIT_FILE in the
 * job share (then synced) and printed on the serial console after MO_EXIT_MARKER the
 * same way. The host takes the serial line and checks it against the file. A setup failure inside
 * the guest is reported the same way with MO_EXIT_SETUP_FAILED, after a line "mobileops-init:
 * <why>" on the serial console.
 *
 * The end: a port's write returns once the data is queued for the host, and what is
 * still queued when qemu exits is lost. So before reporting, once the program ended,
 * init sends "drain <stdout bytes> <stderr bytes>\n" on the control port (the totals the
 * two ports took, from debugfs: /sys/kernel/debug/virtio-ports/<dev>, "bytes_sent") and
 * waits for "drained\n", which the host sends once qemu has written that much to each
 * stream; or stops waiting when the control port hangs up. (No drain after a setup
 * failure before the ports are open.) Then init reports and makes the VM reset (the
 * kernel runs with reboot=t and qemu with -no-reboot, so qemu exits).
 */
#ifndef MOBILEOPS_KRUN_PROTOCOL_H
#define MOBILEOPS_KRUN_PROTOCOL_H

#define MO_TAG_JOB "mo-job"
#define MO_TAG_ROOT "mo-root"
#define MO_TAG_VOLUME_PREFIX "mo-vol"
#define MO_JOB_FILE "job"
#define MO_EXIT_FILE "exit"
#define MO_EXIT_MARKER "mobileops-exit: "
#define MO_EXIT_SETUP_FAILED 125
#define MO_PORT_STDOUT "mobileops.stdout"
#define MO_PORT_STDERR "mobileops.stderr"
#define MO_PORT_CONTROL "mobileops.control"

#endif
