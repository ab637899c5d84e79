"""Kubernetes' path to mobileops: containerd's CRI plugin with a `mobileops` runtime handler.

No kubelet or crictl is packaged for Debian 12, so the test speaks the CRI gRPC API
(runtime.v1, the subset in cri/api.proto) to a private containerd, as the kubelet would:
a pod sandbox with runtime_handler "mobileops" (a RuntimeClass's handler), containers in
it, their logs, ExecSync, exit codes, stop and removal. The handler is a containerd
runtime entry (io.containerd.runc.v2 with BinaryName = bin/mobileops-runc and a private
Root), so every sandbox and container is made by mobileops-runc through
containerd-shim-runc-v2; the test checks that with `mobileops-runc --root ROOT/k8s.io
list`.

Everything is private: containerd's root, state, sockets and config in a /tmp directory,
the CNI directories empty (the pods use the host's network, so no CNI plugin is needed),
an image built locally from busybox-static with umoci (nothing is pulled), the pods'
cgroups under a parent named after the run. Cleanup (also after a failure): pods removed
through CRI, tasks killed, containerd stopped, shims and any leftover container processes
killed, mobileops-runc state deleted, mounts under the directory unmounted, cgroups
removed, the directory deleted; the test fails when it had to clean any of these itself.

Environment: MOBILEOPS_BIN (the build's bin/mobileops, to find bin/mobileops-runc),
MOBILEOPS_SOURCE_DIR (tools/make-rootfs.sh), MOBILEOPS_OCI_TEST_RUNTIME (another runtime,
e.g. /usr/sbin/runc, to check the harness itself), MOBILEOPS_CRI_KEEP (a directory: the
config.json of every bundle the shim creates, and containerd's log when a test fails, are
copied there).

Run alone: `python3 cri_test.py -v`. Exits 77 (CTest's skip code here) when everything
was skipped, saying why.
"""

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MOBILEOPS_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
NAMESPACE = "k8s.io"
HANDLER = "mobileops"
IMAGE = "localhost/mobileops-cri-busybox:latest"
CGROUP_ROOT = "/sys/fs/cgroup"
SKIP = 77


def runtime_binary():
    other = os.environ.get("MOBILEOPS_OCI_TEST_RUNTIME")
    if other:
        return other
    mobileops = os.environ.get("MOBILEOPS_BIN", "")
    if not mobileops:
        return ""
    return os.path.join(os.path.dirname(mobileops), "mobileops-runc")


def run(argv, check=True, timeout=120, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s%s"
                             % (" ".join(argv), r.returncode, r.stdout, r.stderr))
    return r


def missing_prerequisite():
    """Why this test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for binary in ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2",
                   "/usr/bin/umoci"):
        if not os.access(binary, os.X_OK):
            return "%s is not installed (tools/install-deps.sh)" % binary
    for module in ("grpc", "grpc_tools.protoc", "google.protobuf"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            return ("python module %s is missing for %s (python3-grpcio, python3-grpc-tools, "
                    "python3-protobuf: tools/install-deps.sh): %s" % (module, sys.executable, e))
    runtime = runtime_binary()
    if not runtime:
        return "MOBILEOPS_BIN is not set (the build's bin/mobileops)"
    if not os.access(runtime, os.X_OK):
        return "%s is not built" % runtime
    return None


def generate_stubs(out):
    """The Python messages and stubs of cri/api.proto, generated into `out` (not committed)."""
    from grpc_tools import protoc
    proto_dir = os.path.join(HERE, "cri")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["protoc", "-I" + proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
            os.path.join(proto_dir, "api.proto")]
    if os.path.isdir(include):
        args.insert(1, "-I" + include)
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on cri/api.proto")
    sys.path.insert(0, out)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


def wait_for(what, predicate, attempts=600, interval=0.05):
    """predicate() until it is truthy; the number of attempts bounds it, not a clock."""
    value = None
    for _ in range(attempts):
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("gave up waiting for %s (last: %r)" % (what, value))


def mounts_under(path):
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def processes_matching(predicate):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
            root = os.readlink("/proc/%s/root" % entry)
        except OSError:
            continue
        if predicate([a.decode(errors="replace") for a in argv if a], root):
            pids.append(int(entry))
    return pids


def cgroup_dirs_under(name):
    """Directories below /sys/fs/cgroup/<hierarchy>/<name> in every hierarchy, deepest first."""
    found = []
    for hierarchy in sorted(os.listdir(CGROUP_ROOT)):
        top = os.path.join(CGROUP_ROOT, hierarchy, name)
        if not os.path.isdir(top):
            continue
        for dirpath, _, _ in os.walk(top):
            found.append(dirpath)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


class Cluster:
    """A private containerd with the CRI plugin and the `mobileops` runtime handler."""

    def __init__(self, runtime, pb, pb_grpc):
        self.runtime = runtime
        self.pb = pb
        self.token = uuid.uuid4().hex[:10]
        # short: the shims' socket paths must fit in sun_path
        self.dir = tempfile.mkdtemp(prefix="mo-cri-", dir="/tmp")
        self.address = os.path.join(self.dir, "ctd.sock")
        self.runc_root = os.path.join(self.dir, "runc")
        self.cgroup_parent = "mo-cri-" + self.token
        self.proc = None
        self.channel = None
        self.pb_grpc = pb_grpc
        self.problems = []  # what cleanup had to clean itself

    # --- setup -------------------------------------------------------------------------
    def start(self):
        for sub in ("cni/bin", "cni/conf", "logs"):
            os.makedirs(os.path.join(self.dir, sub))
        config = os.path.join(self.dir, "config.toml")
        self.binary = self.binary_name()
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        with open(config, "w") as f:
            f.write('version = 2\nroot = "%s/root"\nstate = "%s/state"\n' % (self.dir, self.dir))
            f.write('[grpc]\naddress = "%s"\n' % self.address)
            f.write('[ttrpc]\naddress = "%s.ttrpc"\n' % self.address)
            f.write("[%s]\n" % cri)
            f.write('sandbox_image = "%s"\n' % IMAGE)
            f.write('stream_server_address = "127.0.0.1"\nstream_server_port = "0"\n')
            f.write("disable_apparmor = true\nenable_selinux = false\n")
            # the sandbox asks oom_score_adj -998, which needs CAP_SYS_RESOURCE (not in this
            # host's bounding set); restricted, it is clamped to containerd's own
            f.write("restrict_oom_score_adj = true\n")
            f.write("[%s.containerd]\n" % cri)
            # the handler is also the default, so no pod here can run on anything else
            f.write('snapshotter = "native"\ndefault_runtime_name = "%s"\n' % HANDLER)
            f.write("[%s.containerd.runtimes.%s]\n" % (cri, HANDLER))
            f.write('runtime_type = "io.containerd.runc.v2"\n')
            f.write("[%s.containerd.runtimes.%s.options]\n" % (cri, HANDLER))
            f.write('BinaryName = "%s"\nRoot = "%s"\nSystemdCgroup = false\n'
                    % (self.binary, self.runc_root))
            f.write("[%s.cni]\n" % cri)
            f.write('bin_dir = "%s/cni/bin"\nconf_dir = "%s/cni/conf"\n' % (self.dir, self.dir))
        env = dict(os.environ, MOBILEOPS_CONFIG=os.path.join(self.dir, "none.conf"))
        self.log = open(os.path.join(self.dir, "containerd.log"), "w")
        self.proc = subprocess.Popen(["/usr/bin/containerd", "--config", config],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        wait_for("containerd to answer", lambda: self.proc.poll() is None and
                 self.ctr("version", check=False).returncode == 0)
        plugins = self.ctr("plugins", "ls").stdout
        cri = [l.split() for l in plugins.splitlines()]
        cri = [f for f in cri if f[:2] == ["io.containerd.grpc.v1", "cri"]]
        if not cri:
            raise unittest.SkipTest("this containerd has no CRI plugin (`ctr plugins ls`)")
        if cri[0][-1] != "ok":
            self.log.flush()
            with open(os.path.join(self.dir, "containerd.log")) as f:
                why = [line.strip() for line in f
                       if "failed to load plugin io.containerd.grpc.v1.cri" in line]
            raise AssertionError("containerd's CRI plugin failed to load: %s"
                                 % ("\n".join(why) or " ".join(cri[0])))
        import grpc
        self.channel = grpc.insecure_channel("unix://" + self.address)
        self.rt = self.pb_grpc.RuntimeServiceStub(self.channel)
        self.img = self.pb_grpc.ImageServiceStub(self.channel)
        self.import_image()

    def ctr(self, *args, check=True):
        return run(["/usr/bin/ctr", "--address", self.address, "--namespace", NAMESPACE]
                   + list(args), check=check)

    def import_image(self):
        """busybox as an OCI image (umoci), entrypoint `sleep`: it is also the pods' sandbox
        image, whose process must keep running."""
        layout = os.path.join(self.dir, "layout")
        unpack = os.path.join(self.dir, "unpack")
        rootfs = os.path.join(self.dir, "image-rootfs")
        run([os.path.join(SOURCE_DIR, "tools/make-rootfs.sh"), rootfs])
        run(["/usr/bin/umoci", "init", "--layout", layout])
        run(["/usr/bin/umoci", "new", "--image", layout + ":latest"])
        run(["/usr/bin/umoci", "unpack", "--image", layout + ":latest", unpack])
        run(["/usr/bin/cp", "-a", rootfs + "/.", unpack + "/rootfs/"])
        run(["/usr/bin/umoci", "repack", "--image", layout + ":latest", unpack])
        run(["/usr/bin/umoci", "config", "--image", layout + ":latest",
             "--config.entrypoint", "/bin/sleep", "--config.cmd", "2147483647"])
        tar = os.path.join(self.dir, "image.tar")
        run(["/usr/bin/tar", "-C", layout, "-cf", tar, "."])
        self.ctr("images", "import", "--base-name", IMAGE.rsplit(":", 1)[0],
                 "--snapshotter", "native", tar)
        for d in (layout, unpack, rootfs):
            shutil.rmtree(d)
        # the CRI plugin learns of the image through containerd's events
        wait_for("the CRI plugin to see " + IMAGE, lambda: self.img.ImageStatus(
            self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=IMAGE))).image.id)

    # --- helpers -----------------------------------------------------------------------
    def runc_list(self):
        """The containers mobileops-runc (the handler's binary) holds for the k8s.io namespace."""
        root = os.path.join(self.runc_root, NAMESPACE)
        if not os.path.isdir(root):
            return {}
        r = run([self.runtime, "--root", root, "list", "--format", "json"])
        return {c["id"]: c for c in (json.loads(r.stdout or "null") or [])}

    def binary_name(self):
        """The handler's BinaryName: the runtime itself or, with MOBILEOPS_CRI_KEEP, a wrapper
        that first copies each bundle's config.json there (containerd deletes a bundle whose
        create failed before anyone can read it)."""
        keep = os.environ.get("MOBILEOPS_CRI_KEEP")
        if not keep:
            return self.runtime
        os.makedirs(keep, exist_ok=True)
        wrapper = os.path.join(self.dir, "runtime-keeping-configs")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nb=""; p=""\nfor a; do [ "$p" = --bundle ] && b=$a; p=$a; done\n'
                    '[ -n "$b" ] && cp "$b/config.json" "%s/$(basename "$b").config.json"\n'
                    'exec "%s" "$@"\n' % (keep, self.runtime))
        os.chmod(wrapper, 0o755)
        return wrapper

    def keep(self, why):
        """On failure: containerd's log into MOBILEOPS_CRI_KEEP (the configs are there)."""
        keep = os.environ.get("MOBILEOPS_CRI_KEEP")
        if not keep:
            return
        self.log.flush()
        shutil.copy(os.path.join(self.dir, "containerd.log"), os.path.join(keep, "containerd.log"))
        with open(os.path.join(keep, "why.txt"), "a") as f:
            f.write(why + "\n")

    # --- cleanup -----------------------------------------------------------------------
    def stop(self):
        """Undo everything, whatever state the test left; what had to be forced is recorded
        in self.problems."""
        if self.channel is not None:
            try:
                pods = self.rt.ListPodSandbox(self.pb.ListPodSandboxRequest(), timeout=30).items
                for pod in pods:
                    self.problems.append("pod %s (%s) left running" % (pod.id, pod.metadata.name))
                    self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod.id),
                                           timeout=60)
                    self.rt.RemovePodSandbox(
                        self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=60)
            except Exception as e:  # containerd may be the thing that failed
                self.problems.append("removing pods through CRI: %s" % e)
            self.channel.close()
        if self.proc is not None and self.proc.poll() is None:
            r = self.ctr("tasks", "list", "-q", check=False)
            for tid in r.stdout.split():
                self.problems.append("task %s left" % tid)
                self.ctr("tasks", "kill", "-s", "KILL", tid, check=False)
                self.ctr("tasks", "delete", "-f", tid, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
        # shims outlive containerd: each exits once its task is deleted
        shims = processes_matching(lambda argv, root: argv and "containerd-shim" in argv[0]
                                   and self.address in argv)
        shims_left = []
        for _ in range(100):
            shims_left = [p for p in shims if os.path.exists("/proc/%d" % p)]
            if not shims_left:
                break
            time.sleep(0.05)
        for pid in shims_left:
            self.problems.append("shim %d left" % pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            left = self.runc_list()
        except Exception as e:
            left = {}
            self.problems.append("mobileops-runc list: %s" % e)
        for cid in left:
            self.problems.append("mobileops-runc container %s left" % cid)
            run([self.runtime, "--root", os.path.join(self.runc_root, NAMESPACE), "delete",
                 "--force", cid], check=False)
        strays = processes_matching(lambda argv, root: root.startswith(self.dir + "/"))
        for pid in strays:
            self.problems.append("process %d left with its root in %s" % (pid, self.dir))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for point in reversed(mounts_under(self.dir)):
            self.problems.append("mount left: " + point)
            run(["/usr/bin/umount", "-l", point], check=False)
        # the pods' parent cgroups are the kubelet's to remove (here the test's); anything
        # below a pod's own cgroup belonged to a sandbox or container and should be gone
        for path in cgroup_dirs_under(self.cgroup_parent):
            depth = os.path.relpath(path, CGROUP_ROOT).count("/")
            if depth >= 3:  # hierarchy/mo-cri-TOKEN/podUID/CONTAINER
                self.problems.append("cgroup left: " + path)
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        for path in cgroup_dirs_under(self.cgroup_parent):
            self.problems.append("cgroup could not be removed: " + path)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            self.problems.append("%s could not be removed" % self.dir)


class CriTest(unittest.TestCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        why = missing_prerequisite()
        if why:
            raise unittest.SkipTest(why)
        cls.stubs = tempfile.mkdtemp(prefix="mo-cri-stubs-")
        # the shims put their sockets in /run/containerd/s: removed after us if we made it
        cls.had_run_dir = os.path.exists("/run/containerd")
        try:
            cls.pb, pb_grpc = generate_stubs(cls.stubs)
            cls.k8s_dirs = {h: os.path.isdir(os.path.join(CGROUP_ROOT, h, NAMESPACE))
                            for h in os.listdir(CGROUP_ROOT)}
            cls.cluster = Cluster(runtime_binary(), cls.pb, pb_grpc)
            cls.cluster.start()
        except BaseException:
            cls.cleanup()
            raise

    @classmethod
    def cleanup(cls):
        if cls.cluster is not None:
            cls.cluster.stop()
        shutil.rmtree(cls.stubs, ignore_errors=True)
        if not getattr(cls, "had_run_dir", True):
            shutil.rmtree("/run/containerd", ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()
        problems = list(cls.cluster.problems) if cls.cluster else []
        for h, had in cls.k8s_dirs.items():
            if not had and os.path.isdir(os.path.join(CGROUP_ROOT, h, NAMESPACE)):
                problems.append("cgroup %s/%s/%s appeared" % (CGROUP_ROOT, h, NAMESPACE))
        if problems:
            raise AssertionError("cleanup had to remove what the CRI calls left:\n  "
                                 + "\n  ".join(problems))

    def setUp(self):
        self.c = self.cluster
        self.rt = self.c.rt

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > failures and self.cluster:
            self.cluster.keep(self.id())
        return outcome

    # --- helpers -----------------------------------------------------------------------
    def pod_config(self, name, pid=None):
        uid = uuid.uuid4().hex
        pb = self.pb
        log_dir = os.path.join(self.c.dir, "logs", "default_%s_%s" % (name, uid))
        os.makedirs(log_dir)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default"),
            log_directory=log_dir,
            labels={"mobileops-test": self.c.token},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="/%s/pod%s" % (self.c.cgroup_parent, uid),
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.NODE, pid=pb.CONTAINER if pid is None else pid,
                        ipc=pb.POD)))), uid

    def run_pod(self, name, pid=None):
        """A ready pod through the mobileops handler, stopped and removed at the end of the
        test."""
        config, uid = self.pod_config(name, pid)
        pod = self.rt.RunPodSandbox(self.pb.RunPodSandboxRequest(
            config=config, runtime_handler=HANDLER), timeout=120).pod_sandbox_id
        self.addCleanup(self.remove_pod, pod)
        return pod, config, uid

    def remove_pod(self, pod):
        import grpc
        try:
            self.rt.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # the test removed it
                return
            raise
        self.rt.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)

    def container_config(self, name, command, resources=None, pid=None, **security):
        pb = self.pb
        return pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=IMAGE),
            command=command, log_path="%s/0.log" % name,
            linux=pb.LinuxContainerConfig(
                resources=resources,
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=pb.NamespaceOption(
                        network=pb.NODE, pid=pb.CONTAINER if pid is None else pid,
                        ipc=pb.POD), **security)))

    def create(self, pod, sandbox_config, name, command, resources=None, **kw):
        return self.rt.CreateContainer(self.pb.CreateContainerRequest(
            pod_sandbox_id=pod, config=self.container_config(name, command, resources, **kw),
            sandbox_config=sandbox_config), timeout=120).container_id

    def exec_sync(self, cid, *cmd):
        r = self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=list(cmd),
                                                     timeout=60), timeout=90)
        return r.exit_code, r.stdout.decode(), r.stderr.decode()

    def cgroup_of(self, pid, controller):
        """The v1 cgroup directory of `pid` for `controller`."""
        with open("/proc/%d/cgroup" % pid) as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    return os.path.join(CGROUP_ROOT, controller, path.lstrip("/"))
        return None

    def status(self, cid, verbose=False):
        return self.rt.ContainerStatus(
            self.pb.ContainerStatusRequest(container_id=cid, verbose=verbose), timeout=30)

    def wait_exited(self, cid):
        return wait_for("container %s to exit" % cid, lambda: (
            lambda s: s if s.state == self.pb.CONTAINER_EXITED else None)(self.status(cid).status))

    def log_of(self, sandbox_config, name):
        path = os.path.join(sandbox_config.log_directory, name, "0.log")
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # --- tests -------------------------------------------------------------------------
    def test_version_and_status(self):
        v = self.rt.Version(self.pb.VersionRequest(version="v1"), timeout=30)
        self.assertEqual(v.runtime_name, "containerd")
        self.assertEqual(v.runtime_api_version, "v1")
        status = self.rt.Status(self.pb.StatusRequest(), timeout=30).status
        ready = {c.type: c.status for c in status.conditions}
        self.assertTrue(ready.get("RuntimeReady"), status)

    def test_pod_lifecycle(self):
        """RunPodSandbox through the handler, a container that runs and logs, ExecSync, stop
        and removal, with mobileops-runc holding every process on the way."""
        pb = self.pb
        pod, sandbox_config, uid = self.run_pod("lifecycle")
        st = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod),
                                      timeout=30).status
        self.assertEqual(st.state, pb.SANDBOX_READY)
        self.assertEqual(st.runtime_handler, HANDLER)
        listed = self.c.runc_list()
        self.assertIn(pod, listed, "the sandbox is not a mobileops-runc container")
        self.assertEqual(listed[pod]["status"], "running")

        # a pod's limits as the kubelet sends them: 64Mi of memory, half a CPU
        cid = self.create(pod, sandbox_config, "web",
                          ["sh", "-c", "trap 'exit 0' TERM; echo hello-cri; "
                           "while :; do sleep 1; done"],
                          pb.LinuxContainerResources(memory_limit_in_bytes=64 << 20,
                                                     cpu_period=100000, cpu_quota=50000,
                                                     cpu_shares=512))
        self.assertEqual(self.status(cid).status.state, pb.CONTAINER_CREATED)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        s = self.status(cid, verbose=True)
        self.assertEqual(s.status.state, pb.CONTAINER_RUNNING, s.status)
        self.assertEqual(s.status.log_path,
                         os.path.join(sandbox_config.log_directory, "web/0.log"))
        info = json.loads(s.info.get("info", "{}"))
        self.assertEqual(info.get("runtimeOptions", {}).get("binary_name"), self.c.binary,
                         info)
        pid = info.get("pid")
        self.assertTrue(pid and os.path.exists("/proc/%d" % pid), info)
        listed = self.c.runc_list()
        self.assertIn(cid, listed, "the container is not a mobileops-runc container")
        self.assertEqual(listed[cid]["status"], "running")
        self.assertEqual(listed[cid]["pid"], pid)
        # in the cgroup the kubelet's parent names, with the pod's limits
        want = "/%s/pod%s/%s" % (self.c.cgroup_parent, uid, cid)
        for controller, knob, value in (("memory", "memory.limit_in_bytes", str(64 << 20)),
                                        ("cpu", "cpu.cfs_quota_us", "50000"),
                                        ("cpu", "cpu.cfs_period_us", "100000"),
                                        ("cpu", "cpu.shares", "512"),
                                        ("pids", None, None)):
            path = self.cgroup_of(pid, controller)
            self.assertIsNotNone(path, "no %s cgroup for pid %d" % (controller, pid))
            self.assertTrue(path.endswith(want), "%s cgroup %s, expected ...%s"
                            % (controller, path, want))
            if knob:
                with open(os.path.join(path, knob)) as f:
                    self.assertEqual(f.read().strip(), value, knob)
        # the CRI log format: TIMESTAMP STREAM TAG MESSAGE
        log = wait_for("hello-cri in the container's log",
                       lambda: self.log_of(sandbox_config, "web"))
        wait_for("hello-cri in the container's log",
                 lambda: " stdout F hello-cri\n" in self.log_of(sandbox_config, "web"))
        self.assertIn("hello-cri", self.log_of(sandbox_config, "web"), log)

        # ExecSync is the shim's exec: `mobileops-runc exec --process FILE --detach`
        r = self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["echo", "exec-ok"],
                                                timeout=60), timeout=90)
        self.assertEqual((r.exit_code, r.stdout, r.stderr), (0, b"exec-ok\n", b""))
        r = self.rt.ExecSync(pb.ExecSyncRequest(
            container_id=cid, cmd=["sh", "-c", "echo to-stderr >&2; exit 5"], timeout=60),
            timeout=90)
        self.assertEqual((r.exit_code, r.stdout, r.stderr), (5, b"", b"to-stderr\n"))
        # the exec'd process is in the container: it sees the init as pid 1 (own pid namespace)
        r = self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["cat", "/proc/1/cmdline"],
                                                timeout=60), timeout=90)
        self.assertEqual(r.exit_code, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"sh\0-c\0"), r.stdout)
        # a pod on the host's network has the node's hostname, in uname as in /etc/hostname
        node = socket.gethostname()
        r = self.rt.ExecSync(pb.ExecSyncRequest(
            container_id=cid, cmd=["sh", "-c", "hostname; cat /etc/hostname"], timeout=60),
            timeout=90)
        self.assertEqual((r.exit_code, r.stdout.decode().split()), (0, [node, node]), r.stderr)

        # StopContainer: SIGTERM first (the trap exits 0), SIGKILL only after the timeout
        self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=30), timeout=90)
        s = self.status(cid).status
        self.assertEqual(s.state, pb.CONTAINER_EXITED)
        self.assertEqual(s.exit_code, 0, s)
        self.assertNotIn(cid, self.c.runc_list(), "stopped container still held by the runtime")
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)
        left = self.rt.ListContainers(pb.ListContainersRequest(
            filter=pb.ContainerFilter(pod_sandbox_id=pod)), timeout=30).containers
        self.assertEqual(list(left), [])

        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        st = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod),
                                      timeout=30).status
        self.assertEqual(st.state, pb.SANDBOX_NOTREADY)
        self.assertNotIn(pod, self.c.runc_list())
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
        self.assertEqual(list(self.rt.ListPodSandbox(pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(id=pod)), timeout=30).items), [])
        self.assert_pod_cgroups_gone(uid)

    def test_exit_code(self):
        pb = self.pb
        pod, sandbox_config, uid = self.run_pod("exitcode")
        cid = self.create(pod, sandbox_config, "three", ["sh", "-c", "echo bye; exit 3"])
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        s = self.wait_exited(cid)
        self.assertEqual(s.exit_code, 3, s)
        self.assertEqual(s.reason, "Error", s)
        self.assertGreater(s.finished_at, 0)
        self.assertIn(" stdout F bye\n", self.log_of(sandbox_config, "three"))
        self.assertNotIn(cid, self.c.runc_list())
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)

    def test_missing_command_fails_start(self):
        """A command the image lacks fails StartContainer (the runtime's create) with a message
        naming it, and leaves no container in the runtime."""
        import grpc
        pb = self.pb
        pod, sandbox_config, _ = self.run_pod("missing")
        cid = self.create(pod, sandbox_config, "nosuch", ["/no/such-command"])
        with self.assertRaises(grpc.RpcError) as caught:
            self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        self.assertIn("/no/such-command", caught.exception.details())
        self.assertNotIn(cid, self.c.runc_list())
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)

    def test_shared_pid_namespace(self):
        """shareProcessNamespace: the pod's PID namespace is the sandbox's, joined by path."""
        pb = self.pb
        pod, sandbox_config, _ = self.run_pod("sharedpid", pid=pb.POD)
        cid = self.create(pod, sandbox_config, "shared", ["sleep", "1000"], pid=pb.POD)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        code, out, err = self.exec_sync(cid, "cat", "/proc/1/cmdline")
        self.assertEqual(code, 0, err)
        self.assertEqual(out.split("\0")[:2], ["/bin/sleep", "2147483647"],
                         "pid 1 is not the sandbox's process")
        code, out, err = self.exec_sync(cid, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        self.assertIn("sleep 1000", out)
        self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=90)
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)

    def test_security_context(self):
        """runAsUser and readOnlyRootFilesystem from the container's security context."""
        pb = self.pb
        pod, sandbox_config, _ = self.run_pod("security")
        cid = self.create(pod, sandbox_config, "locked", ["sleep", "1000"],
                          run_as_user=pb.Int64Value(value=65534), readonly_rootfs=True)
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=120)
        self.assertEqual(self.exec_sync(cid, "id", "-u")[:2], (0, "65534\n"))
        code, _, err = self.exec_sync(cid, "touch", "/tmp/x")
        self.assertNotEqual(code, 0)
        self.assertIn("Read-only file system", err)
        with open("/proc/%d/status" % json.loads(self.status(cid, verbose=True).info["info"])
                  ["pid"]) as f:
            self.assertIn("Uid:\t65534", f.read())
        self.rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=0), timeout=90)
        self.rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=60)

    def assert_pod_cgroups_gone(self, uid):
        pod_dir = "%s/pod%s" % (self.c.cgroup_parent, uid)
        left = [p for p in cgroup_dirs_under(pod_dir)
                if os.path.basename(p) != "pod" + uid]
        self.assertEqual(left, [], "cgroups of the pod's sandbox or containers left")


def main():
    result = unittest.main(module=__name__, exit=False, verbosity=2).result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped and len(result.skipped) >= result.testsRun:
        sys.exit(SKIP)
    sys.exit(0)


if __name__ == "__main__":
    main()
