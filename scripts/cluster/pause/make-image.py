#!/usr/bin/env python3
"""Pack one static binary as a single-layer docker-archive image tar.

    make-image.py BINARY TAG OUT.tar

The result is what `docker save` writes (manifest.json with RepoTags, an
image config with architecture/os/Entrypoint/rootfs.diff_ids, one layer tar)
and imports with `ctr -n k8s.io images import OUT.tar`. Used for the pod
sandbox (pause) image, since no registry can be reached.
"""
import hashlib
import io
import json
import sys
import tarfile


def main() -> None:
    binary, tag, out = sys.argv[1:4]
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tar.gettarinfo(binary, arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        info.mtime = 0
        with open(binary, "rb") as fh:
            tar.addfile(info, fh)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "moorage scripts/cluster/pause"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = hashlib.sha256(layer_bytes).hexdigest() + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()

    with tarfile.open(out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((layer_name, layer_bytes), (config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
