#!/usr/bin/env python3
"""Archives for the storage tests: hostile tarballs and a multi-layer OCI image layout.

    archives.py CASE OUT

Hostile cases write one tarball to OUT; `layout` writes an OCI image layout directory
(two layers with a whiteout and an opaque directory); `layout-tar` the same as a tar;
`flatten-layout` three layers exercising what flattening must get right (whiteouts of a
file and a directory, an opaque directory, a hard link broken by a later layer and one
kept, a changed mode, owners, an xattr, a device node, a fifo, a symlink, a name deleted
and made again), on top of the tar given as a third argument if any.
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def add(tar, name, data=b"", **kw):
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def hostile(case, out):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "bin", type=tarfile.DIRTYPE, mode=0o755)
        add(tar, "bin/ok", b"fine\n", mode=0o755)
        if case == "dotdot":
            add(tar, "bin/../../evil", b"x")
        elif case == "absolute":
            add(tar, "/etc/evil", b"x")
        elif case == "hardlink":
            add(tar, "bin/shadow", type=tarfile.LNKTYPE, linkname="../../../../etc/shadow")
        elif case == "symlink":
            add(tar, "bin/up", type=tarfile.SYMTYPE, linkname="../../../../../etc")
        elif case == "device":
            add(tar, "dev", type=tarfile.DIRTYPE, mode=0o755)
            add(tar, "dev/sda", type=tarfile.BLKTYPE, devmajor=8, devminor=0, mode=0o660)
        elif case == "whiteout":
            add(tar, "bin/.wh.ok")
        elif case in ("truncated", "huge"):
            pass
        else:
            raise SystemExit("unknown case " + case)
    data = buf.getvalue()
    if case == "truncated":
        big = io.BytesIO()
        with tarfile.open(fileobj=big, mode="w") as tar:
            add(tar, "bin", type=tarfile.DIRTYPE, mode=0o755)
            add(tar, "bin/big", os.urandom(256 * 1024), mode=0o644)
        data = gzip.compress(big.getvalue())
        data = data[: len(data) // 2]
    if case == "huge":
        # a header that claims a 1 TiB file, followed by a few bytes
        info = tarfile.TarInfo("bin/huge")
        info.size = 1 << 40
        data = info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096
    with open(out, "wb") as f:
        f.write(data)


def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            add(tar, *e[:2], **(e[2] if len(e) > 2 else {}))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


def blob(root, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def write_layout(out, raw_layers, ref, cmd):
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    layers = []
    diff_ids = []
    for raw, gz in raw_layers:
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": blob(out, gz), "size": len(gz)})
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": cmd, "Env": ["A=1"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": blob(out, config), "size": len(config)},
                           "layers": layers}).encode()
    m = blob(out, manifest)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m,
             "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": ref}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


def flatten_layers():
    d = {"type": tarfile.DIRTYPE, "mode": 0o755}
    l1 = layer([
        ("a", b"", d), ("a/keep", b"keep\n"), ("a/gone", b"gone\n"),
        ("a/sub", b"", d), ("a/sub/deep", b"deep\n"),
        ("o", b"", d), ("o/old", b"old\n"), ("o/olddir", b"", d), ("o/olddir/x", b"x\n"),
        ("h", b"", d), ("h/f1", b"one\n"), ("h/f2", b"", {"type": tarfile.LNKTYPE,
                                                          "linkname": "h/f1"}),
        ("h/g1", b"same\n"), ("h/g2", b"", {"type": tarfile.LNKTYPE, "linkname": "h/g1"}),
        ("m", b"mode\n", {"mode": 0o644}),
        ("own", b"owned\n", {"mode": 0o640, "uid": 1000, "gid": 1001}),
        ("x", b"xattr\n", {"pax_headers": {"SCHILY.xattr.user.note": "hello"}}),
        ("dev", b"", d), ("dev/null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1,
                                            "devminor": 3, "mode": 0o666}),
        ("p", b"", {"type": tarfile.FIFOTYPE, "mode": 0o600}),
        ("s", b"", {"type": tarfile.SYMTYPE, "linkname": "a/keep"}),
        ("setuid", b"s\n", {"mode": 0o4755}),
    ])
    l2 = layer([
        ("a", b"", d), ("a/.wh.gone", b""), ("a/.wh.sub", b""), ("a/new", b"new\n"),
        ("o", b"", {"type": tarfile.DIRTYPE, "mode": 0o750}), ("o/.wh..wh..opq", b""),
        ("o/fresh", b"fresh\n"),
        ("h", b"", d), ("h/f1", b"two\n"),
        ("m", b"mode\n", {"mode": 0o600}),
    ])
    l3 = layer([
        ("a", b"", d), ("a/gone", b"back\n"),
        ("own", b"owned\n", {"mode": 0o640, "uid": 1000, "gid": 1002}),
    ])
    return [l1, l2, l3]


def hostile_flatten_layers(host_dir):
    """Layers that try to reach `host_dir` on the host when applied one over the other: an
    absolute symlink to it in the first (a climbing one is refused at load), and a second
    layer that writes and whites out through it."""
    d = {"type": tarfile.DIRTYPE, "mode": 0o755}
    l1 = layer([
        ("abs", b"", {"type": tarfile.SYMTYPE, "linkname": host_dir}),
        ("etc", b"", d), ("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
    ])
    l2 = layer([
        ("abs/evil", b"written through a symlink\n"), ("abs/.wh.sentinel", b""),
    ])
    return [l1, l2]


def layout(out):
    d = {"type": tarfile.DIRTYPE, "mode": 0o755}
    l1 = layer([
        ("a", b"", d), ("a/keep", b"keep\n"), ("a/gone", b"gone\n"),
        ("a/sub", b"", d), ("a/sub/deep", b"deep\n"),
        ("o", b"", d), ("o/old1", b"1\n"), ("o/old2", b"2\n"),
        ("bin", b"", d), ("bin/tool", b"#!/bin/sh\n", {"mode": 0o755}),
    ])
    l2 = layer([
        ("a", b"", d), ("a/.wh.gone", b""), ("a/.wh.sub", b""), ("a/new", b"new\n"),
        ("o", b"", d), ("o/.wh..wh..opq", b""), ("o/fresh", b"fresh\n"),
    ])
    write_layout(out, [l1, l2], "example.test/layered:1", ["/bin/tool"])


def main():
    case, out = sys.argv[1], sys.argv[2]
    if case == "layout":
        layout(out)
    elif case == "flatten-hostile":
        write_layout(out, hostile_flatten_layers(sys.argv[3]), "example.test/hostile:1",
                     ["/bin/sh"])
    elif case == "flatten-layout":
        # An optional third argument: a tar put below the three layers (a busybox root
        # for a container that looks at the result).
        base = []
        if len(sys.argv) > 3:
            raw = open(sys.argv[3], "rb").read()
            base = [(raw, gzip.compress(raw, mtime=0))]
        write_layout(out, base + flatten_layers(), "example.test/flat:1", ["/bin/sh"])
    elif case == "layout-tar":
        layout(out + ".d")
        with tarfile.open(out, "w") as tar:
            for name in sorted(os.listdir(out + ".d")):
                tar.add(os.path.join(out + ".d", name), arcname=name)
    else:
        hostile(case, out)


main()
