"""What belongs to a release, found from its manifest whatever the chart's labels (pure: no API)."""

from __future__ import annotations

import yaml

from moorage import release
from moorage.readiness import workloads
from moorage.readiness.rules import belongs
from tests.fixtures.kubeapi import load_object, load_objects, merge

NS = "shop"

# The reference fixtures (kubectl get -o yaml), relabelled the way a third-party chart labels its pods.
THIRD_PARTY = {"app": "backend", "tier": "api"}


def third_party(obj: dict) -> dict:
    out = merge(obj, {"metadata": {"labels": None}})
    out["metadata"]["labels"] = dict(THIRD_PARTY)
    if "selector" in out.get("spec", {}):
        out["spec"]["selector"] = {"matchLabels": dict(THIRD_PARTY)}
        out["spec"]["template"]["metadata"]["labels"] = dict(THIRD_PARTY)
    return out


def test_a_pod_labelled_only_by_its_chart_belongs_to_its_deployment_through_its_replicaset():
    deploy, pod = third_party(load_object("deployment")), third_party(load_object("pod"))
    replicasets = {rs["metadata"]["name"]: third_party(rs) for rs in load_objects("replicaset")}
    assert belongs(deploy, pod, replicasets)


def test_a_pod_whose_replicaset_another_deployment_owns_is_not_its_even_when_the_selector_matches():
    deploy, pod = third_party(load_object("deployment")), third_party(load_object("pod"))
    replicasets = {rs["metadata"]["name"]: merge(third_party(rs), {"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "admin", "controller": True}]}})
        for rs in load_objects("replicaset")}
    assert not belongs(deploy, pod, replicasets)


def test_members_are_the_manifests_objects_their_replicasets_pods_and_claims():
    deploy = third_party(load_object("deployment"))
    rendered = merge(deploy, {"status": None, "metadata": {"namespace": None}})
    stranger = merge(third_party(load_object("pod")), {"metadata": {"name": "other-1", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "other", "controller": True}]}})
    listed = {"Deployment": [deploy], "ReplicaSet": [third_party(rs) for rs in load_objects("replicaset")],
              "Pod": [third_party(load_object("pod")), stranger], "PersistentVolumeClaim": []}
    found = workloads.members([rendered], NS, listed)
    assert [d["metadata"]["name"] for d in found["Deployment"]] == ["backend"]
    assert len(found["ReplicaSet"]) == 2
    assert [p["metadata"]["name"] for p in found["Pod"]] == ["backend-6d9c7b8f5d-x7k2p"]


MANIFEST = """\
---
# Source: shop/templates/pvc.yaml
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: shop-uploads
spec:
  accessModes: [ReadWriteOnce]
---
# Source: shop/templates/statefulset.yaml
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: shop-db
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
  volumeClaimTemplates:
    - metadata: {name: data}
---
# Source: shop/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop-api
spec:
  selector: {matchLabels: {app: backend, tier: api}}
  template:
    metadata: {labels: {app: backend, tier: api}}
"""
OBJECTS = [d for d in yaml.safe_load_all(MANIFEST) if d]


def claim(name: str, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, **meta}}


def test_the_release_claims_are_rendered_ones_statefulset_ones_and_those_helm_or_the_label_marks():
    claims = [claim("shop-uploads"), claim("data-shop-db-0"), claim("data-shop-db-12"), claim("data-other-db-0"),
              claim("shop-cache", annotations={"meta.helm.sh/release-name": "shop"}),
              claim("old", labels={"app.kubernetes.io/instance": "shop"}), claim("data-shop-db-x")]
    assert release.release_volumes("shop", NS, OBJECTS, claims) == [
        "data-shop-db-0", "data-shop-db-12", "old", "shop-cache", "shop-uploads"]


def test_a_component_is_a_workloads_name_its_end_or_a_pod_template_label():
    api, db = workloads.workloads_in(OBJECTS, NS)[::-1]
    for name in ("shop-api", "api", "backend"):
        assert workloads.matching([api, db], name) == [api]
    assert workloads.matching([api, db], "tier") == []
    assert workloads.matching([api, db], "hop-api") == []
    assert workloads.components([api, db], "shop") == ["backend", "db"]


def test_keep_marks_only_the_named_claims_in_the_stored_manifest_and_keeps_the_source_comments():
    marked = release.keep_in_manifest(MANIFEST, {"shop-uploads"})
    docs = [d for d in yaml.safe_load_all(marked) if d]
    assert docs[0]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert docs[1:] == OBJECTS[1:]
    assert "# Source: shop/templates/pvc.yaml" in marked
    assert marked.split("# Source: shop/templates/statefulset.yaml")[1] == \
        MANIFEST.split("# Source: shop/templates/statefulset.yaml")[1]


def test_a_release_record_reads_back_as_helm_wrote_it():
    record = {"name": "shop", "version": 3, "manifest": MANIFEST}
    assert release.decode_release(release.encode_release(record)) == record
