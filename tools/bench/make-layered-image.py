#!/usr/bin/env python3
"""Write a multi-layer OCI image layout from parts of a root filesystem, for the storage
benchmark: the tree's top-level entries are spread over LAYERS gzip layers of similar size
(largest directories split by their own entries), tagged `bench`.

    make-layered-image.py ROOTFS OUT [LAYERS]
"""
import gzip
import hashlib
import json
import os
import sys
import tarfile


def size_of(path):
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def parts(rootfs, count):
    """(relative path, bytes) units: top-level entries, the big ones split one level down."""
    units = []
    target = size_of(rootfs) / count
    stack = [""]
    while stack:
        rel = stack.pop()
        full = os.path.join(rootfs, rel) if rel else rootfs
        for name in sorted(os.listdir(full)):
            r = os.path.join(rel, name) if rel else name
            p = os.path.join(rootfs, r)
            s = size_of(p) if os.path.isdir(p) and not os.path.islink(p) else os.lstat(p).st_size
            if os.path.isdir(p) and not os.path.islink(p) and s > target / 2:
                units.append((r, 0, True))  # the directory entry itself
                stack.append(r)
            else:
                units.append((r, s, False))
    return units


def main():
    rootfs, out = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    units = parts(rootfs, count)
    total = sum(u[1] for u in units)
    groups, current, acc = [], [], 0
    for u in units:
        current.append(u)
        acc += u[1]
        if acc >= total / count and len(groups) < count - 1:
            groups.append(current)
            current, acc = [], 0
    groups.append(current)
    os.makedirs(os.path.join(out, "blobs", "sha256"))
    layers, diff_ids = [], []
    for group in groups:
        raw_path = os.path.join(out, "layer.tar")
        with tarfile.open(raw_path, "w", format=tarfile.PAX_FORMAT) as tar:
            for rel, _, dir_only in group:
                tar.add(os.path.join(rootfs, rel), arcname=rel, recursive=not dir_only)
        h = hashlib.sha256()
        with open(raw_path, "rb") as f, gzip.open(raw_path + ".gz", "wb", compresslevel=1) as g:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                g.write(chunk)
        diff_ids.append("sha256:" + h.hexdigest())
        d = hashlib.sha256()
        with open(raw_path + ".gz", "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                d.update(chunk)
        digest = d.hexdigest()
        os.rename(raw_path + ".gz", os.path.join(out, "blobs", "sha256", digest))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": "sha256:" + digest,
                       "size": os.path.getsize(os.path.join(out, "blobs", "sha256", digest)),
                       "unpacked": os.path.getsize(raw_path)})
        os.unlink(raw_path)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest, len(data)

    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cd, cs = blob(config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cd, "size": cs},
                           "layers": [{k: v for k, v in l.items() if k != "unpacked"}
                                      for l in layers]}).encode()
    md, ms = blob(manifest)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
             "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    for i, l in enumerate(layers):
        print("layer %d: %.1f MB unpacked, %.1f MB gzip" % (i + 1, l["unpacked"] / 1e6, l["size"] / 1e6))
    print("total: %.1f MB unpacked in %d layers" % (sum(l["unpacked"] for l in layers) / 1e6, len(layers)))


main()
