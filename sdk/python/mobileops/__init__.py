"""mobileops: a client of the mobileops REST API (docs/api.md), standard library only.

    from mobileops import ContainerManager
    mgr = ContainerManager()                      # $MOBILEOPS_RUN/api.sock
    mgr = ContainerManager(url="http://127.0.0.1:8780", token="...")
    c = mgr.create_container(name="web", image="busybox:latest",
                             command=["sh", "-c", "echo hi; sleep 60"],
                             resources={"limits": {"memory": "64Mi"}})
    c.start()
    for line in c.logs(follow=True):
        print(line["line"])
    c.stop(); c.delete()

Every failure raises MobileopsError with .code (the API's code: not_found, invalid,
state, ...), .status (the HTTP status) and .message.
"""

import http.client
import json
import os
import socket as _socket
import time
import urllib.parse

__all__ = ["ContainerManager", "Container", "MobileopsError"]


class MobileopsError(Exception):
    """An error the server answered (or the connection's failure: status 0)."""

    def __init__(self, code, status, message):
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.status = status
        self.message = message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def _default_socket():
    return os.path.join(os.environ.get("MOBILEOPS_RUN") or "/run/mobileops", "api.sock")


class ContainerManager:
    """A connection to `mobileops serve`: a unix socket (default) or a URL with a token."""

    def __init__(self, socket=None, url=None, token=None, timeout=150.0, ssl_context=None,
                 busy_retries=5):
        if socket and url:
            raise ValueError("give socket or url, not both")
        self._socket = None if url else (socket or _default_socket())
        self._url = urllib.parse.urlsplit(url) if url else None
        if self._url and self._url.scheme not in ("http", "https"):
            raise ValueError(f"url: expected http:// or https://, got {url!r}")
        self._token = token
        self._timeout = timeout
        self._ssl = ssl_context
        # 503 busy (the server's request cap, or a lock held too long) means nothing was
        # done: retried after Retry-After, this many times
        self._busy_retries = busy_retries

    # --- plumbing ---------------------------------------------------------------------

    def _connect(self, timeout=None):
        t = self._timeout if timeout is None else timeout
        if self._socket:
            return _UnixConnection(self._socket, t)
        if self._url.scheme == "https":
            return http.client.HTTPSConnection(self._url.hostname, self._url.port or 443,
                                               timeout=t, context=self._ssl)
        return http.client.HTTPConnection(self._url.hostname, self._url.port or 80, timeout=t)

    def _headers(self, body_type=None):
        h = {}
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        if body_type:
            h["Content-Type"] = body_type
        return h

    @staticmethod
    def _path(path, query=None):
        if query:
            q = {k: ("true" if v is True else "false" if v is False else str(v))
                 for k, v in query.items() if v is not None}
            if q:
                path += "?" + urllib.parse.urlencode(q)
        return path

    @staticmethod
    def _raise(resp, data):
        try:
            j = json.loads(data)
            raise MobileopsError(j.get("code", "unknown"), resp.status, j.get("message", ""))
        except (ValueError, AttributeError):
            raise MobileopsError("unknown", resp.status, data.decode("utf-8", "replace")) from None

    def request(self, method, path, query=None, body=None, body_type="application/json"):
        """One request; the decoded JSON answer (None for 204)."""
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        for attempt in range(self._busy_retries + 1):
            try:
                return self._request_once(method, path, query, body, body_type)
            except MobileopsError as e:
                if e.status != 503 or attempt == self._busy_retries:
                    raise
                time.sleep(min(2.0, 0.2 * (attempt + 1)))

    def _request_once(self, method, path, query, body, body_type):
        conn = self._connect()
        try:
            conn.request(method, self._path(path, query), body=body,
                         headers=self._headers(body_type if body is not None else None))
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise MobileopsError("connection", 0, str(e)) from None
        finally:
            conn.close()
        if resp.status >= 400:
            self._raise(resp, data)
        if resp.status == 204 or not data:
            return None
        ctype = resp.getheader("Content-Type", "")
        if "ndjson" in ctype:
            return [json.loads(l) for l in data.decode().splitlines() if l.strip()]
        return json.loads(data)

    def stream(self, path, query=None):
        """A generator of the JSON lines of a streamed answer; closing it ends the stream."""
        conn = self._connect(timeout=None)
        try:
            conn.request("GET", self._path(path, query), headers=self._headers())
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            raise MobileopsError("connection", 0, str(e)) from None
        if resp.status >= 400:
            data = resp.read()
            conn.close()
            self._raise(resp, data)

        def lines():
            try:
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    if line.strip():
                        yield json.loads(line)
            finally:
                conn.close()

        return lines()

    # --- containers -------------------------------------------------------------------

    def create_container(self, name, image=None, command=None, resources=None, volumes=None,
                         env=None, rootfs=None, start=False, spec=None):
        """Create a container from a VirtualRoot spec built from the arguments (or `spec`,
        a whole VirtualRoot dict, merged under them). Returns a Container."""
        doc = dict(spec or {"apiVersion": "v1", "kind": "VirtualRoot"})
        doc.setdefault("metadata", {})["name"] = name
        s = doc.setdefault("spec", {})
        if image is not None:
            s["image"] = image
        if rootfs is not None:
            s["rootfs"] = rootfs
        if command is not None:
            s["command"] = [command] if isinstance(command, str) else list(command)
        if resources is not None:
            s["resources"] = resources
        if volumes is not None:
            s["volumes"] = volumes
        if env is not None:
            items = env.items() if isinstance(env, dict) else env
            s["environment"] = [{"name": k, "value": str(v)} for k, v in items]
        state = self.request("POST", "/api/v1/containers", {"start": start} if start else None, doc)
        return Container(self, state.get("name") or name, state.get("id"))

    def create_container_from_spec(self, spec_text, start=False):
        """Create from a VirtualRoot spec as JSON or YAML text."""
        state = self.request("POST", "/api/v1/containers", {"start": start} if start else None,
                             spec_text, "application/yaml")
        return Container(self, state.get("name"), state.get("id"))

    def list_containers(self, all=True):
        return [Container(self, c.get("name") or c["id"], c.get("id"), c)
                for c in self.request("GET", "/api/v1/containers", {"all": all})]

    def get_container(self, name):
        state = self.request("GET", f"/api/v1/containers/{_seg(name)}")
        return Container(self, state.get("name") or name, state.get("id"), state)

    # --- the rest ---------------------------------------------------------------------

    def images(self):
        return self.request("GET", "/api/v1/images")

    def volumes(self):
        return self.request("GET", "/api/v1/volumes")

    def networks(self):
        return self.request("GET", "/api/v1/networks")

    def events(self, since=None, type=None, container=None):
        return self.stream("/api/v1/events", {"since": since, "type": type, "container": container})

    def version(self):
        return self.request("GET", "/api/v1/version")


def _seg(name):
    return urllib.parse.quote(str(name), safe="")


class Container:
    """A container on the server, by name."""

    def __init__(self, manager, name, id=None, state=None):
        self._m = manager
        self.name = name
        self.id = id
        self.state = state

    def __repr__(self):
        return f"Container({self.name!r})"

    def _action(self, verb, query=None):
        self._m.request("POST", f"/api/v1/containers/{_seg(self.name)}/{verb}", query)
        return self

    def start(self):
        return self._action("start")

    def stop(self, timeout=None):
        return self._action("stop", {"timeout": timeout})

    def restart(self, timeout=None):
        return self._action("restart", {"timeout": timeout})

    def kill(self, signal=None):
        return self._action("kill", {"signal": signal})

    def pause(self):
        return self._action("pause")

    def resume(self):
        return self._action("resume")

    def delete(self, force=False):
        self._m.request("DELETE", f"/api/v1/containers/{_seg(self.name)}",
                        {"force": True} if force else None)

    def update(self, **resources):
        """Change resource limits: update(memory="128Mi", pids_limit=64)."""
        self._m.request("PUT", f"/api/v1/containers/{_seg(self.name)}", body=resources)
        return self

    def inspect(self):
        self.state = self._m.request("GET", f"/api/v1/containers/{_seg(self.name)}")
        return self.state

    def get_status(self):
        return self.inspect().get("status")

    def stats(self):
        return self._m.request("GET", f"/api/v1/containers/{_seg(self.name)}/stats")

    def logs(self, follow=False, tail=None, since=None):
        """The log lines as dicts ({"line", "stream", "time", ...}); a generator when
        following (until the container stops or the generator is closed)."""
        q = {"tail": tail, "since": since}
        path = f"/api/v1/containers/{_seg(self.name)}/logs"
        if follow:
            q["follow"] = True
            return self._m.stream(path, q)
        return self._m.request("GET", path, q)
