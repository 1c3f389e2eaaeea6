#!/usr/bin/python3
"""Builds the test images of the image tests (Tests/BerthIntegrationTests/ImageTests.swift).

    make-images.py OUTDIR [BIG_MIB]

OUTDIR gets:
  oci/, oci.tar, oci.tar.gz  an OCI image layout "test/layers:v1" with 3 layers (gzip, plain, gzip):
                         busybox, then a whiteout (data/a) and an opaque dir (data/b), then files
  docker.tar             the same image as a docker-archive (docker save), named test/docker:v1
  bad-traversal.tar, bad-absolute.tar, bad-symlink.tar, bad-hardlink.tar, bad-hardlink-dotdot.tar
                         OCI archives whose second layer is malicious
  bad-digest.tar         a layer whose bytes do not match the config's diff id
  bad-truncated.tar      oci.tar cut short
  bad-platform.tar       an index offering only linux/arm64
  big/ (if BIG_MIB)      an OCI layout "test/big:v1": the busybox layer and BIG_MIB MiB of random data
Only the standard library; reproducible apart from the random layer.
"""
import gzip, hashlib, io, json, os, sys, tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "cat", "ls", "echo", "test", "id", "pwd", "env", "sleep", "touch", "mkdir", "rm", "stat", "head", "wc", "readlink"]


def add(t, name, data=None, mode=0o644, kind=tarfile.REGTYPE, linkname="", uid=0, gid=0):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = 1700000000
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        data = data or b""
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    else:
        t.addfile(info)


def layer(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            add(t, *e[0:1], **e[1])
    return buf.getvalue()


def base_layer():
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    e = [("bin", dict(kind=tarfile.DIRTYPE, mode=0o755)),
         ("bin/busybox", dict(data=busybox, mode=0o755))]
    e += [("bin/" + a, dict(kind=tarfile.SYMTYPE, linkname="busybox", mode=0o777)) for a in APPLETS]
    e += [("etc", dict(kind=tarfile.DIRTYPE, mode=0o755)),
          ("etc/passwd", dict(data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")),
          ("etc/group", dict(data=b"root:x:0:\napp:x:1001:\n")),
          ("tmp", dict(kind=tarfile.DIRTYPE, mode=0o1777)),
          ("home", dict(kind=tarfile.DIRTYPE, mode=0o755)),
          ("home/app", dict(kind=tarfile.DIRTYPE, mode=0o755, uid=1000, gid=1001)),
          ("work", dict(kind=tarfile.DIRTYPE, mode=0o777)),
          ("data", dict(kind=tarfile.DIRTYPE, mode=0o755)),
          ("data/a", dict(data=b"a\n")),
          ("data/b", dict(kind=tarfile.DIRTYPE, mode=0o755)),
          ("data/b/keep", dict(data=b"keep\n")),
          ("data/c", dict(data=b"c\n"))]
    return layer(e)


def whiteout_layer():
    return layer([("data", dict(kind=tarfile.DIRTYPE, mode=0o755)),
                  ("data/.wh.a", dict(data=b"")),
                  ("data/b", dict(kind=tarfile.DIRTYPE, mode=0o755)),
                  ("data/b/.wh..wh..opq", dict(data=b"")),
                  ("data/b/new", dict(data=b"new\n"))])


def top_layer():
    return layer([("etc/motd", dict(data=b"layer3\n")),
                  ("data/c", dict(data=b"c3\n"))])


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def gz(b):
    return gzip.compress(b, mtime=0)


CONFIG = {"Cmd": ["sh", "-c", "echo default-cmd"],
          "Env": ["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDE=image"],
          "WorkingDir": "/work", "User": "app", "StopSignal": "SIGQUIT",
          "ExposedPorts": {"80/tcp": {}}, "Labels": {"test": "layers"}}


def image(layers, config=None, diff_ids=None, arch="amd64"):
    """layers: list of (uncompressed tar, compress?) → (blobs dict, manifest bytes, config bytes)."""
    blobs = {}
    descs = []
    for raw, compress in layers:
        blob = gz(raw) if compress else raw
        blobs[sha(blob)] = blob
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
                      "digest": sha(blob), "size": len(blob)})
    cfg = json.dumps({"architecture": arch, "os": "linux", "config": config or CONFIG,
                      "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(raw) for raw, _ in layers]}},
                     sort_keys=True).encode()
    blobs[sha(cfg)] = cfg
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
                           "layers": descs}, sort_keys=True).encode()
    blobs[sha(manifest)] = manifest
    return blobs, manifest, cfg


def write_layout(path, blobs, index_entries):
    os.makedirs(path + "/blobs/sha256", exist_ok=True)
    for d, b in blobs.items():
        with open(path + "/blobs/sha256/" + d.split(":")[1], "wb") as f:
            f.write(b)
    with open(path + "/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(path + "/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index_entries}, f)


def tar_dir(path, out):
    with tarfile.open(out, "w") as t:
        for name in sorted(os.listdir(path)):
            t.add(os.path.join(path, name), arcname=name)


def oci_archive(out, layers, name, **kw):
    blobs, manifest, _ = image(layers, **kw)
    d = out + ".d"
    write_layout(d, blobs, [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                             "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": name}}])
    tar_dir(d, out)
    return d


def main():
    out = sys.argv[1]
    big = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    os.makedirs(out, exist_ok=True)
    base, wh, top = base_layer(), whiteout_layer(), top_layer()
    layers = [(base, True), (wh, False), (top, True)]
    blobs, manifest, cfg = image(layers)
    write_layout(out + "/oci", blobs, [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                                        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "test/layers:v1"}}])
    tar_dir(out + "/oci", out + "/oci.tar")
    with open(out + "/oci.tar", "rb") as f, open(out + "/oci.tar.gz", "wb") as g:
        g.write(gz(f.read()))

    # docker-archive: uncompressed layers named by directory, config by hex.
    with tarfile.open(out + "/docker.tar", "w") as t:
        paths = []
        for i, (raw, _) in enumerate(layers):
            p = "%d/layer.tar" % i
            add(t, "%d" % i, kind=tarfile.DIRTYPE, mode=0o755)
            add(t, p, data=raw)
            paths.append(p)
        add(t, sha(cfg).split(":")[1] + ".json", data=cfg)
        add(t, "manifest.json", data=json.dumps([{"Config": sha(cfg).split(":")[1] + ".json",
                                                   "RepoTags": ["test/docker:v1"], "Layers": paths}]).encode())

    bad = {
        "traversal": [("../evil", dict(data=b"x"))],
        "absolute": [("/etc/evil", dict(data=b"x"))],
        "symlink": [("esc", dict(kind=tarfile.SYMTYPE, linkname="/etc")), ("esc/evil", dict(data=b"x"))],
        "hardlink": [("shadow", dict(kind=tarfile.LNKTYPE, linkname="/etc/shadow"))],
        "hardlink-dotdot": [("shadow", dict(kind=tarfile.LNKTYPE, linkname="../../../../etc/shadow"))],
    }
    for name, entries in bad.items():
        oci_archive(out + "/bad-%s.tar" % name, [(base, True), (layer(entries), False)], "test/bad:%s" % name)
    oci_archive(out + "/bad-digest.tar", [(base, True), (top, False)], "test/bad:digest",
                diff_ids=[sha(base), sha(wh)])
    with open(out + "/oci.tar", "rb") as f:
        whole = f.read()
    with open(out + "/bad-truncated.tar", "wb") as f:
        f.write(whole[:len(whole) // 2])
    # An index for linux/arm64 only.
    blobs, manifest, _ = image([(base, True)], arch="arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                                       "size": len(manifest), "platform": {"os": "linux", "architecture": "arm64"}}]}).encode()
    blobs[sha(index)] = index
    d = out + "/bad-platform.tar.d"
    write_layout(d, blobs, [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(index), "size": len(index),
                             "annotations": {"org.opencontainers.image.ref.name": "test/bad:platform"}}])
    tar_dir(d, out + "/bad-platform.tar")

    if big:
        data = os.urandom(big << 20)
        blobs, manifest, _ = image([(base, True), (layer([("big", dict(data=data))]), False)])
        write_layout(out + "/big", blobs, [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
                                            "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "test/big:v1"}}])


main()
