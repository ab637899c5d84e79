"""The REST API against real `mobileops serve` processes (unix socket and TCP with a
token) over a temporary MOBILEOPS_ROOT/RUN and a busybox image built here. Needs root.

Each class starts its own server(s); tearDownClass deletes every container, stops the
servers with SIGTERM and checks nothing is left: no socket, mount, cgroup or process.
"""

import glob
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from mobileops import ContainerManager, MobileopsError

BIN = os.environ.get("MOBILEOPS_BIN", "mobileops")
SRC = os.environ.get("MOBILEOPS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "t0ken-for-the-api-tests-0123456789"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class World:
    """A temporary root with an image, and the servers started on it."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="mo-api-")
        self.env = dict(os.environ, MOBILEOPS_ROOT=self.tmp + "/root", MOBILEOPS_RUN=self.tmp + "/run",
                        MOBILEOPS_CONFIG=self.tmp + "/none.conf")
        self.env.pop("MOBILEOPS_ERROR_FORMAT", None)
        self.servers = []
        self.ids = set()
        rootfs = self.tmp + "/rootfs"
        subprocess.run([SRC + "/tools/make-rootfs.sh", rootfs], check=True, capture_output=True)
        self.cli("image", "build-rootfs", "-q", rootfs, "bb:1")

    def cli(self, *args, check=True, env=None):
        r = subprocess.run([BIN, *args], env=env or self.env, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"mobileops {' '.join(args)}: {r.returncode}: {r.stderr}")
        return r

    def serve(self, *args, wait_for=None):
        """Start `mobileops serve ARGS` and wait until it listens."""
        log = open(self.tmp + f"/serve-{len(self.servers)}-{time.monotonic_ns()}.log", "w+")
        p = subprocess.Popen([BIN, "serve", *args], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                log.seek(0)
                raise AssertionError(f"serve {args} exited {p.returncode}: {log.read()}")
            if wait_for(p):
                self.servers.append(p)
                return p
            time.sleep(0.05)
        p.kill()
        raise AssertionError(f"serve {args} did not come up")

    def serve_unix(self, path=None, *extra):
        """With no path: the default socket, $MOBILEOPS_RUN/api.sock."""
        args = ["--socket", path] if path else []
        path = path or self.tmp + "/run/api.sock"

        def up(_):
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(path)
                    return True
                except OSError:
                    return False

        p = self.serve(*args, *extra, wait_for=up)
        return p, path

    def token_file(self, mode=0o600, text=TOKEN):
        path = self.tmp + f"/token-{mode:o}"
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, mode)
        return path

    def serve_tcp(self, *extra):
        port = free_port()

        def up(_):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        p = self.serve("--listen", f"127.0.0.1:{port}", "--token-file", self.token_file(), *extra,
                       wait_for=up)
        return p, port

    def stop(self, p, sig=signal.SIGTERM):
        p.send_signal(sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("serve did not stop on SIGTERM")
        if p in self.servers:
            self.servers.remove(p)
        return p.returncode

    def leftovers(self):
        """What a container or command left on the host."""
        out = []
        with open("/proc/self/mountinfo") as f:
            out += [l.strip() for l in f if self.tmp in l]
        for cid in self.ids:
            out += glob.glob(f"/sys/fs/cgroup/*/mobileops/{cid}")
            out += glob.glob(f"/sys/fs/cgroup/*/*/mobileops/{cid}")
        mark = ("MOBILEOPS_ROOT=" + self.tmp + "/root").encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) in [os.getpid()] + [p.pid for p in self.servers]:
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        with open(f"/proc/{pid}/cmdline", "rb") as c:
                            cmd = c.read().replace(b"\0", b" ").decode()
                            out.append(f"process {pid}: {cmd}")
            except OSError:
                pass
        return out

    def close(self):
        problems = []
        r = self.cli("--json", "container", "list", "--all", check=False)
        try:
            for c in json.loads(r.stdout or "[]"):
                self.ids.add(c["id"])
                self.cli("container", "delete", "--force", c["id"], check=False)
        except ValueError:
            problems.append("container list: " + r.stderr)
        for p in list(self.servers):
            try:
                self.stop(p)
            except AssertionError as e:
                problems.append(str(e))
        problems += self.leftovers()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


def raw(path, method="GET", body=None, headers=None, sock=None, port=None, timeout=60):
    """(status, headers, decoded body) of one request."""
    if sock:
        conn = http.client.HTTPConnection("localhost", timeout=timeout)
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(sock)
        conn.sock = s
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        try:
            data = r.read()
        except ConnectionResetError:  # an error answered before the request was read
            data = b""
        ctype = r.getheader("Content-Type", "")
        if data and "application/json" in ctype:
            data = json.loads(data)
        return r.status, dict(r.getheaders()), data
    finally:
        conn.close()


def spec(name, command, image="bb:1", **extra):
    s = {"apiVersion": "v1", "kind": "VirtualRoot", "metadata": {"name": name},
         "spec": {"image": image, "command": command}}
    s["spec"].update(extra)
    return json.dumps(s)


class Base(unittest.TestCase):
    world = None
    sock = None

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (containers run)")
        cls.world = World()
        try:
            cls.start_servers()
        except Exception:
            cls.world.close()
            raise

    @classmethod
    def start_servers(cls):
        cls.server, cls.sock = cls.world.serve_unix()

    @classmethod
    def tearDownClass(cls):
        if cls.world:
            problems = cls.world.close()
            if problems:
                raise AssertionError("left behind: " + "; ".join(problems))

    def req(self, path, method="GET", body=None, headers=None):
        return raw(path, method, body, headers, sock=self.sock)

    def create(self, name, command, start=False, **extra):
        st, _, body = self.req("/api/v1/containers" + ("?start=true" if start else ""), "POST",
                               spec(name, command, **extra))
        self.assertEqual(st, 201, body)
        self.world.ids.add(body["id"])
        return body

    def wait_log(self, name, text, count=1, timeout=20):
        """Until `text` is `count` of the container's log lines (a process that says it is
        ready has set its signal traps)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, _, logs = self.req(f"/api/v1/containers/{name}/logs")
            if st == 200 and [json.loads(l)["line"] for l in logs.splitlines()].count(text) >= count:
                return
            time.sleep(0.1)
        self.fail(f"{name} never logged {text!r} {count} times")

    def wait_exit(self, name, timeout=20):
        """The exit code, once the monitor has recorded it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, _, body = self.req(f"/api/v1/containers/{name}")
            if st == 200 and "exit_code" in body:
                return body["exit_code"]
            time.sleep(0.1)
        self.fail(f"{name}: no exit code recorded: {body}")

    def wait_status(self, name, want, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, _, body = self.req(f"/api/v1/containers/{name}")
            if st == 200 and body["status"] == want:
                return body
            time.sleep(0.1)
        self.fail(f"{name} never became {want}: {body}")


class RoutesTest(Base):
    def test_version(self):
        st, _, body = self.req("/api/v1/version")
        self.assertEqual(st, 200)
        self.assertEqual(body["api"], "v1")
        self.assertEqual(body["version"], self.world.cli("--version").stdout.split()[1])

    def test_openapi_matches_the_server(self):
        st, _, doc = self.req("/api/v1/openapi.json")
        self.assertEqual(st, 200)
        self.assertTrue(doc["openapi"].startswith("3."))
        paths = doc["paths"]
        self.assertIn("/api/v1/containers/{id}/logs", paths)
        for path, ops in paths.items():
            concrete = path.replace("{id}", "no-such-thing").replace("{ref}", "no/such:image")
            documented = sorted(m.upper() for m in ops)
            for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                if path == "/api/v1/events" and method == "GET":
                    # a stream: its head is enough
                    with socket.socket(socket.AF_UNIX) as s:
                        s.connect(self.sock)
                        s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
                        self.assertIn(b"200 OK", s.recv(4096))
                    continue
                st, headers, body = self.req(concrete, method,
                                             "{}" if method in ("POST", "PUT") else None)
                if method in documented:
                    # the server has the route: whatever it answers, it is not "no route"
                    self.assertNotEqual(st, 405, f"{method} {path}: {body}")
                    if st == 404:
                        self.assertNotIn("no route", body["message"], f"{method} {path}")
                else:
                    # the server has no such route: 405 naming exactly the documented ones
                    self.assertEqual(st, 405, f"{method} {path} is served but not documented")
                    self.assertEqual(headers["Allow"], ", ".join(documented), path)

    def test_unknown_route(self):
        for path in ("/api/v1/nothing", "/api/v2/containers", "/", "/api/v1/containers/a/b/c"):
            st, _, body = self.req(path)
            self.assertEqual(st, 404, path)
            self.assertEqual(body["code"], "not_found")

    def test_container_lifecycle(self):
        c = self.create("life", ["sh", "-c", "trap 'exit 0' TERM; echo hello-from-life; while :; do sleep 0.1; done"])
        self.assertEqual(c["name"], "life")
        self.assertEqual(self.req("/api/v1/containers/life")[2]["status"], "created")
        self.assertEqual(self.req("/api/v1/containers/life/start", "POST")[0], 204)
        self.wait_status("life", "running")
        st, _, listed = self.req("/api/v1/containers")
        self.assertIn("life", [x["name"] for x in listed])
        st, _, stats = self.req("/api/v1/containers/life/stats")
        self.assertEqual(st, 200, stats)
        self.assertGreaterEqual(stats["pids"], 1)
        self.wait_log("life", "hello-from-life")
        st, _, logs = self.req("/api/v1/containers/life/logs?tail=1")
        self.assertEqual((st, [json.loads(l)["line"] for l in logs.splitlines()]), (200, ["hello-from-life"]))
        self.assertEqual(self.req("/api/v1/containers/life", "PUT", '{"memory": "64Mi", "pids_limit": 50}')[0], 204)
        self.assertEqual(self.req("/api/v1/containers/life")[2]["spec"]["resources"]["limits"]["pids"], 50)
        self.assertEqual(self.req("/api/v1/containers/life/pause", "POST")[0], 204)
        self.wait_status("life", "paused")
        self.assertEqual(self.req("/api/v1/containers/life/resume", "POST")[0], 204)
        self.wait_status("life", "running")
        self.assertEqual(self.req("/api/v1/containers/life/restart?timeout=5", "POST")[0], 204)
        self.wait_status("life", "running")
        self.wait_log("life", "hello-from-life", 2)
        self.assertEqual(self.req("/api/v1/containers/life/stop?timeout=5", "POST")[0], 204)
        self.wait_status("life", "stopped")
        self.assertEqual(self.wait_exit("life"), 0)
        self.assertEqual(self.req("/api/v1/containers/life/start", "POST")[0], 204)
        self.assertEqual(self.req("/api/v1/containers/life/kill?signal=KILL", "POST")[0], 204)
        self.wait_status("life", "stopped")
        self.assertEqual(self.req("/api/v1/containers/life", "DELETE")[0], 204)
        self.assertEqual(self.req("/api/v1/containers/life")[0], 404)

    def test_create_from_yaml_and_start(self):
        yaml = ("apiVersion: v1\nkind: VirtualRoot\nmetadata: { name: yam }\n"
                "spec:\n  image: bb:1\n  command: [sleep, '60']\n"
                "  environment: [ { name: FOO, value: bar } ]\n")
        st, _, body = self.req("/api/v1/containers?start=true", "POST", yaml,
                               {"Content-Type": "application/yaml"})
        self.assertEqual(st, 201, body)
        self.world.ids.add(body["id"])
        self.wait_status("yam", "running")
        self.assertEqual(self.req("/api/v1/containers/yam?force=true", "DELETE")[0], 204)

    def test_images_volumes_networks(self):
        st, _, images = self.req("/api/v1/images")
        self.assertEqual(st, 200)
        self.assertTrue(any("bb:1" in json.dumps(i) for i in images), images)
        st, _, image = self.req("/api/v1/images/bb:1")
        self.assertEqual(st, 200, image)
        self.assertEqual(self.req("/api/v1/images/nope:1")[0], 404)
        st, _, vol = self.req("/api/v1/volumes", "POST", '{"name": "vol1"}')
        self.assertEqual(st, 201, vol)
        self.assertIn("vol1", json.dumps(self.req("/api/v1/volumes")[2]))
        self.assertEqual(self.req("/api/v1/volumes/vol1")[0], 200)
        self.assertEqual(self.req("/api/v1/volumes", "POST", '{"name": "vol1"}')[0], 409)
        self.assertEqual(self.req("/api/v1/volumes/vol1", "DELETE")[0], 204)
        self.assertEqual(self.req("/api/v1/volumes/vol1")[0], 404)
        st, _, nets = self.req("/api/v1/networks")
        self.assertEqual(st, 200, nets)
        self.assertIsInstance(nets, list)
        self.assertEqual(self.req("/api/v1/networks/no-such-net")[0], 404)


class ErrorsTest(Base):
    def expect(self, path, method, body, status, code, words=()):
        st, _, answer = self.req(path, method, body)
        self.assertEqual(st, status, f"{method} {path}: {answer}")
        self.assertEqual(answer["code"], code, answer)
        for w in words:
            self.assertIn(w, answer["message"])
        return answer

    def test_the_cli_error_format(self):
        # what the server reads: one JSON line with the ABI code; people still get text
        env = dict(self.world.env, MOBILEOPS_ERROR_FORMAT="json")
        r = self.world.cli("container", "inspect", "nope", check=False, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stderr), {"code": "not_found", "message": "no such container `nope`", "exit": 1})
        r = self.world.cli("container", "inspect", "--bogus", check=False, env=env)
        self.assertEqual((r.returncode, json.loads(r.stderr)["code"]), (2, "usage"))
        r = self.world.cli("container", "create", "x", "/nonexistent-rootfs", check=False, env=env)
        err = json.loads(r.stderr.splitlines()[-1])
        self.assertEqual((err["code"], err["errno"]), ("system", 2), err)
        r = self.world.cli("container", "inspect", "nope", check=False)
        self.assertEqual(r.stderr, "mobileops: no such container `nope`\n")

    def test_not_found(self):
        for verb in ("start", "stop", "kill", "pause", "resume", "restart"):
            self.expect(f"/api/v1/containers/ghost/{verb}", "POST", None, 404, "not_found", ["ghost"])
        self.expect("/api/v1/containers/ghost", "GET", None, 404, "not_found")
        self.expect("/api/v1/containers/ghost", "DELETE", None, 404, "not_found")
        self.expect("/api/v1/containers/ghost/logs", "GET", None, 404, "not_found")
        self.expect("/api/v1/containers/ghost/logs?follow=true", "GET", None, 404, "not_found")
        self.expect("/api/v1/containers", "POST", spec("noimg", ["true"], image="missing:9"), 404, "not_found", ["missing:9"])

    def test_conflicts(self):
        self.create("dup", ["sleep", "60"])
        self.expect("/api/v1/containers", "POST", spec("dup", ["true"]), 409, "exists", ["dup"])
        self.expect("/api/v1/containers/dup/pause", "POST", None, 409, "state")
        self.expect("/api/v1/containers/dup/stats", "GET", None, 409, "state")
        self.assertEqual(self.req("/api/v1/containers/dup", "DELETE")[0], 204)

    def test_bad_input_names_the_field(self):
        self.expect("/api/v1/containers", "POST", spec("badmem", ["true"], resources={"limits": {"memory": "4Gx"}}),
                    400, "invalid", ["spec.resources.limits.memory", "4Gx"])
        self.expect("/api/v1/containers", "POST", spec("badkey", ["true"], colour="red"), 400, "invalid", ["colour"])
        self.expect("/api/v1/containers", "POST", '{"metadata": {}}', 400, "invalid", ["metadata.name"])
        self.expect("/api/v1/containers", "POST", '{"metadata": {"name": "-rf"}}', 400, "invalid", ["metadata.name"])
        self.expect("/api/v1/containers", "POST", "{not json: [", 400, "invalid", ["body"])
        self.expect("/api/v1/containers", "POST", "", 400, "invalid", ["body"])
        self.expect("/api/v1/containers", "POST", "- a\n- list\n", 400, "invalid", ["body"])
        self.expect("/api/v1/containers/x?force=maybe", "DELETE", None, 400, "invalid", ["force"])
        self.expect("/api/v1/containers?colour=red", "GET", None, 400, "invalid", ["colour"])
        self.expect("/api/v1/containers/x/stop?timeout=-1", "POST", None, 400, "invalid", ["timeout"])
        self.expect("/api/v1/containers/x/stop?timeout=1&timeout=2", "POST", None, 400, "invalid", ["timeout"])
        self.expect("/api/v1/containers", "GET", "unexpected", 400, "invalid", ["body"])
        self.create("upd", ["sleep", "60"])
        self.expect("/api/v1/containers/upd", "PUT", '{"colour": 1}', 400, "invalid", ["colour"])
        self.expect("/api/v1/containers/upd", "PUT", '{}', 400, "invalid", ["body"])
        self.expect("/api/v1/containers/upd", "PUT", '{"memory": "4Gx"}', 400, "invalid", ["4Gx"])
        self.expect("/api/v1/containers/upd", "PUT", '{"memory": ["a"]}', 400, "invalid", ["memory"])
        self.expect("/api/v1/containers/upd/kill?signal=NOPE", "POST", None, 400, "invalid", ["NOPE"])
        self.assertEqual(self.req("/api/v1/containers/upd", "DELETE")[0], 204)

    def test_argv_injection_refused(self):
        # names that would be options, or paths, never reach a command line
        for name in ("-rf", "--all", "..", "a%2Fb", "%2Dx", "a%20b", "a%00b", "x" * 129):
            st, _, body = self.req(f"/api/v1/containers/{name}")
            self.assertIn(st, (400, 404), name)
            self.assertEqual(body["code"], "invalid" if st == 400 else "not_found", name)
            if name.startswith(("-", "%2D", "..")):
                self.assertEqual(st, 400, name)
        self.expect("/api/v1/containers/x/kill?signal=--all", "POST", None, 400, "invalid", ["--all"])
        self.expect("/api/v1/images/--help", "GET", None, 400, "invalid")
        self.expect("/api/v1/images/a/../../etc", "GET", None, 400, "invalid")
        # a spec's host paths are the CLI's business: relative ones are not the server's cwd
        self.expect("/api/v1/containers", "POST",
                    json.dumps({"apiVersion": "v1", "kind": "VirtualRoot", "metadata": {"name": "rel"},
                               "spec": {"rootfs": "./nowhere", "command": ["true"]}}),
                    400, "invalid", ["nowhere"])


class StreamsTest(Base):
    def test_logs_follow_until_the_container_stops(self):
        self.create("chatty", ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done"], start=True)
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(self.sock)
        conn.request("GET", "/api/v1/containers/chatty/logs?follow=true")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        lines = [json.loads(l)["line"] for l in r.read().decode().splitlines() if l.strip()]
        conn.close()
        self.assertEqual(lines, [f"line-{i}" for i in range(1, 6)])
        self.assertEqual(self.req("/api/v1/containers/chatty", "DELETE")[0], 204)

    def children(self):
        pids = []
        for task in glob.glob(f"/proc/{self.server.pid}/task/*/children"):
            with open(task) as f:
                pids += f.read().split()
        return pids

    def test_client_going_ends_the_stream(self):
        self.create("quiet", ["sleep", "120"], start=True)
        for path in ("/api/v1/containers/quiet/logs?follow=true", "/api/v1/events"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            self.assertIn(b"200 OK", s.recv(4096))
            self.assertTrue(self.children(), "no command behind the stream")
            s.close()
            deadline = time.monotonic() + 10
            while self.children() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(self.children(), [], f"{path}: the command outlived its client")
        self.assertEqual(self.req("/api/v1/containers/quiet?force=true", "DELETE")[0], 204)

    def test_events(self):
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = socket.socket(socket.AF_UNIX)
        conn.sock.connect(self.sock)
        conn.request("GET", "/api/v1/events?type=container.")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.create("evt", ["true"])
        seen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            e = json.loads(r.readline())
            seen.append(e["type"])
            if e["type"] == "container.create" and e["payload"].get("name") == "evt":
                break
        conn.close()
        self.assertIn("container.create", seen)
        self.assertEqual(self.req("/api/v1/events?type=", "GET")[0], 400)
        self.assertEqual(self.req("/api/v1/containers/evt", "DELETE")[0], 204)


class LimitsTest(Base):
    @classmethod
    def start_servers(cls):
        cls.server, cls.sock = cls.world.serve_unix(None, "--max-body", "4096", "--read-timeout", "1",
                                                    "--max-streams", "1", "--command-timeout", "2")

    def test_body_limit(self):
        def answer(head, chunks=()):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.sock)
                s.settimeout(10)
                try:
                    s.sendall(head)
                    for c in chunks:
                        s.sendall(c)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server answered without reading it all
                data = s.recv(4096)
            status = int(data.split(b" ")[1])
            return status, json.loads(data.split(b"\r\n\r\n", 1)[1])

        # a declared length over the limit: refused before the body is read
        st, body = answer(b"POST /api/v1/containers HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        self.assertEqual((st, body["code"]), (413, "too_large"))
        # chunked, no length given: refused once past the limit
        st, body = answer(b"POST /api/v1/containers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                          [b"1000\r\n" + b"y" * 4096 + b"\r\n"] * 3 + [b"0\r\n\r\n"])
        self.assertEqual((st, body["code"]), (413, "too_large"))
        # at the limit: read, and judged by what it says
        doc = spec("fits", ["true"])
        doc = doc[:-1] + ", " + '"x": "' + "z" * (4096 - len(doc) - 9) + '"}'
        self.assertEqual(len(doc), 4096)
        st, _, body = self.req("/api/v1/containers", "POST", doc)
        self.assertEqual(st, 400, body)
        self.assertIn("x", body["message"])

    def test_header_limits(self):
        st, _, _ = self.req("/api/v1/version", headers={"X-Big": "v" * 20000})
        self.assertEqual(st, 400)
        st, _, _ = self.req("/api/v1/version", headers={f"X-{i}": "v" for i in range(200)})
        self.assertEqual(st, 400)

    def test_many_slow_clients_do_not_stall_the_server(self):
        # more slow clients than Poco's default pool has threads, on a server with a long
        # read timeout: others are still served, and SIGTERM still stops it
        p, path = self.world.serve_unix(self.world.tmp + "/patient.sock", "--read-timeout", "60")
        slow = []
        for _ in range(30):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        self.assertEqual(raw("/api/v1/version", sock=path, timeout=30)[0], 200)
        self.assertEqual(raw("/api/v1/containers", sock=path, timeout=30)[0], 200)
        self.assertEqual(self.world.stop(p), 0)
        for s in slow:
            s.close()
        self.assertFalse(os.path.exists(path))

    def test_slow_clients_are_dropped(self):
        slow = []
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.sock)
            s.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        # served meanwhile
        self.assertEqual(self.req("/api/v1/version")[0], 200)
        self.assertEqual(self.req("/api/v1/containers")[0], 200)
        # and each slow one is dropped after the read timeout (1 s)
        for s in slow:
            s.settimeout(10)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            self.assertNotIn(b"200 OK", data)
            s.close()

    def test_trickling_clients_are_cut(self):
        # a byte every 0.3 s passes every per-read timeout (1 s here); the whole head must
        # still come within the read timeout
        import select
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = False
        for _ in range(40):
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            r, _, _ = select.select([s], [], [], 0.3)
            if r:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertNotIn(b"200 OK", data)
                closed = True
                break
        s.close()
        self.assertTrue(closed, "a trickling client held its connection for 12 s")
        # a slow body is cut the same way
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(b"POST /api/v1/containers HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
        data = b""
        for _ in range(40):
            try:
                s.sendall(b"{")
            except (BrokenPipeError, ConnectionResetError):
                break
            r, _, _ = select.select([s], [], [], 0.3)
            if r:
                data = s.recv(4096)
                break
        s.close()
        self.assertIn(b" 408 ", data)
        self.assertEqual(self.req("/api/v1/version")[0], 200)

    def test_stream_cap(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", s.recv(4096))
        st, headers, body = self.req("/api/v1/events")
        self.assertEqual(st, 503)
        self.assertEqual(body["code"], "busy")
        self.assertEqual(headers.get("Retry-After"), "1")
        s.close()

    def test_request_cap(self):
        p, path = self.world.serve_unix(self.world.tmp + "/one.sock", "--max-requests", "1")
        self.create("slowstop", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], start=True)
        result = {}

        def stop():
            result["stop"] = raw("/api/v1/containers/slowstop/stop?timeout=3", "POST", sock=path)[:3:2]

        def stopping():
            for task in glob.glob(f"/proc/{p.pid}/task/*/children"):
                with open(task) as f:
                    for pid in f.read().split():
                        try:
                            with open(f"/proc/{pid}/cmdline", "rb") as c:
                                if b"\0stop\0" in c.read():
                                    return True
                        except OSError:
                            pass
            return False

        t = threading.Thread(target=stop)
        t.start()
        while not stopping() and t.is_alive():
            time.sleep(0.02)
        # while the stop runs (3 s before its SIGKILL), a second request is turned away
        busy = None
        for _ in range(100):
            st, headers, body = raw("/api/v1/containers", sock=path)
            if st == 503:
                busy = (body["code"], headers.get("Retry-After"))
                break
            if "stop" in result:
                break
        t.join()
        self.assertEqual(busy, ("busy", "1"), result)
        self.assertEqual(result["stop"][0], 204, result)
        self.assertEqual(raw("/api/v1/containers/slowstop", "DELETE", sock=path)[0], 204)
        self.assertEqual(self.world.stop(p), 0)

    def test_a_command_running_too_long_is_killed(self):
        self.create("stubborn", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], start=True)
        st, _, body = self.req("/api/v1/containers/stubborn/stop?timeout=30", "POST")
        self.assertEqual(st, 504, body)
        self.assertEqual(body["code"], "timeout")
        # the killed command left the container usable
        self.assertEqual(self.req("/api/v1/containers/stubborn?force=true", "DELETE")[0], 204)


class AuthTest(Base):
    @classmethod
    def start_servers(cls):
        cls.server, cls.sock = cls.world.serve_unix()
        cls.tcp, cls.port = cls.world.serve_tcp()

    def test_token(self):
        st, headers, body = raw("/api/v1/containers", port=self.port)
        self.assertEqual(st, 401)
        self.assertEqual(body["code"], "unauthorized")
        for wrong in ("Bearer nope", "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1], TOKEN, "Basic " + TOKEN):
            st, _, body = raw("/api/v1/containers", headers={"Authorization": wrong}, port=self.port)
            self.assertEqual(st, 403, wrong)
        st, _, body = raw("/api/v1/containers", headers={"Authorization": "Bearer " + TOKEN}, port=self.port)
        self.assertEqual(st, 200, body)
        # unauthenticated requests learn nothing about routes
        st, _, _ = raw("/api/v1/nothing", port=self.port)
        self.assertEqual(st, 401)

    def test_refusals_at_start(self):
        w = self.world
        r = w.cli("serve", "--listen", "127.0.0.1:1", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--token-file", r.stderr)
        r = w.cli("serve", "--listen", "127.0.0.1:1", "--token-file", w.token_file(0o644), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("readable by everyone", r.stderr)
        r = w.cli("serve", "--listen", "127.0.0.1:1", "--token-file", w.token_file(0o600, "short"), check=False)
        self.assertIn("16 characters", r.stderr)
        r = w.cli("serve", "--socket", self.sock, check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("another server is listening", r.stderr)
        r = w.cli("serve", "--socket", w.tmp + "/rootfs/bin/busybox", check=False)
        self.assertIn("not a socket", r.stderr)
        self.assertEqual(r.returncode, 1)

    def test_socket_mode_stale_socket_and_clean_stop(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.sock).st_mode), 0o600)
        stale = self.world.tmp + "/stale.sock"
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()  # a socket file nobody listens on
        p, path = self.world.serve_unix(stale)
        self.assertEqual(raw("/api/v1/version", sock=path)[0], 200)
        self.assertEqual(self.world.stop(p, signal.SIGINT), 0)
        self.assertFalse(os.path.exists(path), "the socket outlived the server")

    def test_tls(self):
        d = self.world.tmp
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", d + "/key.pem", "-out", d + "/cert.pem"],
                       check=True, capture_output=True)
        p, port = self.world.serve_tcp("--tls-cert", d + "/cert.pem", "--tls-key", d + "/key.pem")
        ctx = ssl.create_default_context(cafile=d + "/cert.pem")
        ctx.check_hostname = False
        m = ContainerManager(url=f"https://127.0.0.1:{port}", token=TOKEN, ssl_context=ctx)
        self.assertEqual(m.version()["api"], "v1")
        with self.assertRaises(MobileopsError) as e:
            ContainerManager(url=f"https://127.0.0.1:{port}", token="wrong-token-000000000", ssl_context=ctx).version()
        self.assertEqual(e.exception.status, 403)
        # plain HTTP on the TLS port gets nothing
        with self.assertRaises(Exception):
            r = raw("/api/v1/version", headers={"Authorization": "Bearer " + TOKEN}, port=port, timeout=5)
            if r[0] == 200:
                raise AssertionError("plain HTTP served on the TLS port")
            raise OSError("refused")
        self.assertEqual(self.world.stop(p), 0)


class SdkTest(Base):
    @classmethod
    def start_servers(cls):
        cls.server, cls.sock = cls.world.serve_unix()
        cls.tcp, cls.port = cls.world.serve_tcp()

    def test_client_over_both_transports(self):
        for m in (ContainerManager(socket=self.sock), ContainerManager(url=f"http://127.0.0.1:{self.port}", token=TOKEN)):
            c = m.create_container(name="sdk", image="bb:1",
                                   command=["sh", "-c", "echo $GREETING; for i in 1 2 3; do echo n$i; sleep 0.2; done"],
                                   resources={"limits": {"memory": "64Mi"}}, env={"GREETING": "hi-sdk"})
            self.world.ids.add(c.id)
            self.assertEqual(c.get_status(), "created")
            self.assertIn("sdk", [x.name for x in m.list_containers()])
            c.start()
            lines = [l["line"] for l in c.logs(follow=True)]
            self.assertEqual(lines, ["hi-sdk", "n1", "n2", "n3"])
            self.wait_status("sdk", "stopped")
            self.assertEqual([l["line"] for l in c.logs(tail=1)], ["n3"])
            with self.assertRaises(MobileopsError) as e:
                c.stats()
            self.assertEqual((e.exception.code, e.exception.status), ("state", 409))
            c.delete()
            with self.assertRaises(MobileopsError) as e:
                c.get_status()
            self.assertEqual((e.exception.code, e.exception.status), ("not_found", 404))

    def test_volumes_and_a_host_path(self):
        m = ContainerManager(socket=self.sock)
        host = self.world.tmp + "/shared"
        os.makedirs(host)
        with open(host + "/in.txt", "w") as f:
            f.write("from-host\n")
        c = m.create_container(
            name="vols", image="bb:1",
            command=["sh", "-c", "cat /in/in.txt; echo kept > /data/out.txt; cat /data/out.txt"],
            volumes=[{"name": "hostdir", "hostPath": host, "containerPath": "/in", "readOnly": True},
                     {"name": "data", "volume": "sdkvol", "containerPath": "/data"}])
        self.world.ids.add(c.id)
        c.start()
        self.assertEqual([l["line"] for l in c.logs(follow=True)], ["from-host", "kept"])
        self.assertIn("sdkvol", json.dumps(m.volumes()))
        c.delete()
        # the named volume outlives the container; remove it through the API too
        m.request("DELETE", "/api/v1/volumes/sdkvol")
        self.assertNotIn("sdkvol", json.dumps(m.volumes()))

    def test_running_container(self):
        m = ContainerManager(socket=self.sock)
        c = m.create_container(name="runner", image="bb:1", start=True,
                               command=["sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done"])
        self.world.ids.add(c.id)
        self.assertEqual(c.get_status(), "running")
        self.wait_log("runner", "ready")
        self.assertGreaterEqual(c.stats()["pids"], 1)
        c.update(pids_limit=20)
        c.kill(signal="TERM")
        # (a container can show as stopped a moment before its monitor records the exit)
        deadline = time.monotonic() + 10
        while "exit_code" not in c.inspect() and time.monotonic() < deadline:
            time.sleep(0.1)
        state = c.inspect()
        self.assertEqual(state.get("exit_code"), 3, {k: v for k, v in state.items() if k != "spec"})  # the TERM it trapped
        c.start()
        c.stop(timeout=1)
        c.delete()
        with self.assertRaises(MobileopsError) as e:
            m.create_container(name="bad", image="bb:1", resources={"limits": {"cpu": "lots"}})
        self.assertEqual(e.exception.status, 400)
        self.assertIn("spec.resources.limits.cpu", e.exception.message)
        with self.assertRaises(MobileopsError) as e:
            ContainerManager(socket=self.world.tmp + "/none.sock").list_containers()
        self.assertEqual(e.exception.code, "connection")


class ConcurrencyTest(Base):
    @classmethod
    def start_servers(cls):
        cls.server, cls.sock = cls.world.serve_unix(None, "--max-requests", "64")

    def test_fifty_clients(self):
        m = ContainerManager(socket=self.sock)
        errors, ids = [], []

        def client(i):
            try:
                c = m.create_container(name=f"conc-{i}", image="bb:1", command=["sleep", "60"], start=True)
                ids.append(c.id)
                if c.get_status() != "running":
                    errors.append(f"conc-{i}: not running")
                if i % 2 == 0:
                    c.delete(force=True)
            except Exception as e:  # noqa: BLE001 (every failure is reported)
                errors.append(f"conc-{i}: {e}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.world.ids.update(ids)
        self.assertEqual(errors, [])
        listed = sorted(c.name for c in m.list_containers())
        self.assertEqual(listed, sorted(f"conc-{i}" for i in range(1, 50, 2)))
        cli = json.loads(self.world.cli("--json", "container", "list", "--all").stdout)
        self.assertEqual(sorted(c["name"] for c in cli), listed)
        for c in m.list_containers():
            self.assertEqual(c.state["status"], "running", c.name)
        # the other half, again 25 at once
        threads = [threading.Thread(target=lambda n=n: m.get_container(n).delete(force=True)) for n in listed]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(m.list_containers(), [])
        self.assertEqual(self.world.leftovers(), [])
        # the server stops cleanly
        self.assertEqual(self.world.stop(self.server), 0)
        self.assertFalse(os.path.exists(self.sock))


if __name__ == "__main__":
    unittest.main()
