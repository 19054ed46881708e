"""Live update (dev.watch): in dev the synced code paths are writable copies seeded from the image while
the root filesystem stays read-only; production renders none of it, and refuses it."""

from __future__ import annotations

import yaml

from tests.chart.conftest import RELEASE, template


def _deployment(objects, name):
    return next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{RELEASE}-{name}")


def test_dev_mounts_writable_copies_over_the_code_paths_and_keeps_the_root_read_only(render):
    for name, paths in (("backend", ["/app/moorage_backend", "/app/moorage_common"]),
                        ("worker", ["/app/moorage_worker", "/app/moorage_common"])):
        spec = _deployment(render("dev"), name)["spec"]["template"]["spec"]
        seed = next(c for c in spec["initContainers"] if c["name"] == "seed-live-update")
        assert all(f'cp -a "{p}"/. /live-update/p{i}/' in seed["command"][-1] for i, p in enumerate(paths))
        assert seed["image"] == spec["containers"][0]["image"]
        container = spec["containers"][0]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert [mounts[p]["subPath"] for p in paths] == ["p0", "p1"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert seed["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["command"][:3] == ["python3", "-m", "moorage_common.devrun"]
        assert {"name": "live-update", "emptyDir": {"sizeLimit": "256Mi"}} in spec["volumes"]
        assert container["readinessProbe"]["periodSeconds"] == 1


def test_production_renders_no_live_update(render):
    for name in ("backend", "worker"):
        spec = _deployment(render("prod"), name)["spec"]["template"]["spec"]
        assert "command" not in spec["containers"][0]
        assert not any(v["name"] == "live-update" for v in spec["volumes"])
        assert [c["name"] for c in spec.get("initContainers", [])] == ["wait-for-schema"]


def test_production_refuses_live_update(helm, generated_values, tmp_path):
    extra = tmp_path / "live.yaml"
    extra.write_text(yaml.safe_dump({"backend": {"liveUpdate": {"enabled": True, "paths": ["/app"]}}}))
    result = template(helm, "prod", generated_values, extra)
    assert result.returncode != 0
    assert "backend.liveUpdate.enabled is for dev only and global.production is true" in result.stderr
