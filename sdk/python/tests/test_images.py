"""Sandboxes from images through the API: an OCI image made by the test from
the host's static busybox, loaded into a store of the test's own."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from nucleus_sdk import Sandbox

from conftest import Server, containers_under, nucleus_bin, require_root

BUSYBOX = "/bin/busybox"


def _blob(layout: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def make_layout(layout: str, ref: str) -> None:
    """An OCI layout: one layer (busybox, its sh, a marker file), a config, a manifest."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        for d in ("bin", "etc", "tmp", "proc", "dev", "sys"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            t.addfile(info)
        t.add(BUSYBOX, "bin/busybox")
        for applet in ("sh", "cat", "echo", "sleep", "ls", "id"):
            info = tarfile.TarInfo("bin/" + applet)
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
        marker = b"from-the-image\n"
        info = tarfile.TarInfo("etc/marker")
        info.size, info.mode = len(marker), 0o644
        t.addfile(info, io.BytesIO(marker))
    layer = raw.getvalue()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin", "FROM_IMAGE=yes"], "Entrypoint": ["/bin/false"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    layer_desc = _blob(layout, gzip.compress(layer, mtime=0))
    config_desc = _blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer_desc}],
    }
    manifest_desc = _blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')


@pytest.fixture
def image_server():
    require_root()
    if not os.path.exists(BUSYBOX):
        pytest.skip("skipped: needs busybox-static")
    root = tempfile.mkdtemp(prefix="nucleus-sdk-img-")
    data = tempfile.mkdtemp(prefix="nucleus-sdk-data-")
    os.chmod(root, 0o755)
    ref = "sdktest/busybox:%d" % os.getpid()
    layout = os.path.join(data, "layout")
    make_layout(layout, ref)
    cli = [nucleus_bin(), "--root", root, "--data-root", data]
    loaded = subprocess.run([*cli, "load", "-i", layout], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    srv = Server(root, extra=["--data-root", data])
    try:
        yield srv, ref, cli
    finally:
        for cid in containers_under(root):
            subprocess.run([*cli, "rm", "-f", cid], capture_output=True)
        srv.stop()
        leftovers = containers_under(root)
        roots = os.listdir(os.path.join(root, ".image-roots")) if os.path.isdir(os.path.join(root, ".image-roots")) else []
        subprocess.run([*cli, "rmi", "-f", ref], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
        assert not leftovers, "sandboxes left behind: %s" % leftovers
        assert not roots, "image roots left behind: %s" % roots


def test_a_sandbox_from_an_image_runs_commands_in_its_root(image_server):
    srv, ref, cli = image_server
    with Sandbox.create(image=ref, socket=srv.socket) as sb:
        # The image's root and env; its entrypoint (/bin/false) does not end the sandbox.
        r = sb.run("cat /etc/marker; echo $FROM_IMAGE; ls /bin | wc -l")
        assert r.exit_code == 0, r.stderr
        lines = r.stdout.split()
        assert lines[:2] == ["from-the-image", "yes"], r.stdout
        # The agent protections hold in an image sandbox too.
        status = sb.run(["cat", "/proc/self/status"]).stdout
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
        # Writes go to the sandbox's own layer, and the image is in use meanwhile.
        assert sb.run("echo changed > /etc/marker").exit_code == 0
        busy = subprocess.run([*cli, "rmi", ref], capture_output=True, text=True)
        assert busy.returncode != 0 and "in use" in busy.stderr, busy.stderr
    # A second sandbox starts from the image as it was.
    with Sandbox.create(image=ref, socket=srv.socket) as sb:
        assert sb.run("cat /etc/marker").stdout == "from-the-image\n"
    assert not os.listdir(os.path.join(srv.root, ".image-roots"))


def test_an_unknown_image_is_refused_by_name(image_server):
    srv, _, _ = image_server
    with pytest.raises(Exception) as e:
        Sandbox.create(image="127.0.0.1:1/nosuch/image:1", socket=srv.socket)
    assert "nosuch/image" in str(e.value)
