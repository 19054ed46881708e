"""The connected environment against a server that speaks the Kubernetes API: a namespace being deleted."""

from __future__ import annotations

import io

import pytest

from moorage import connection, kube
from moorage.core.errors import OperationFailed
from moorage.core.report import Reporter
from tests.fixtures.kubeapi import kubeapi, load_object  # noqa: F401 - kubeapi is a fixture

NS = "moorage-dev"


@pytest.fixture
def api(kubeapi):  # noqa: F811 - the fixture imported above
    return kube.client(kubeapi.context, str(kubeapi.kubeconfig))


def test_namespace_being_deleted_is_said_once_and_waited_for_until_it_is_gone(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    kubeapi.play([], when_watched="namespaces", then=lambda: kubeapi.delete("Namespace", "", NS))
    out = io.StringIO()
    connection.settle_namespace(api, NS, Reporter(stream=out, tty=False))
    lines = out.getvalue().splitlines()
    assert lines[0] == (f"namespace {NS} is being deleted (since 2026-11-23T10:02:11Z): waiting up to 120s for it "
                        "to be gone before deploying")
    assert len(lines) == 2 and lines[1].startswith(f"ok: namespace {NS} is gone after ")


def test_namespace_still_being_deleted_after_the_bound_fails_with_what_to_look_at(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    out = io.StringIO()
    with pytest.raises(OperationFailed) as info:
        connection.settle_namespace(api, NS, Reporter(stream=out, tty=False), bound=1)
    assert info.value.exit_code == 1
    assert info.value.message == f"namespace {NS} is still being deleted after 1s"
    assert f"kubectl get namespace {NS} -o yaml" in info.value.hint
    assert len(out.getvalue().splitlines()) == 1


def test_dry_run_says_the_namespace_is_being_deleted_without_waiting(kubeapi, api):  # noqa: F811
    kubeapi.apply(load_object("namespace-terminating"))
    out = io.StringIO()
    connection.settle_namespace(api, NS, Reporter(stream=out, tty=False), dry_run=True)
    assert out.getvalue() == (f"namespace {NS} is being deleted (since 2026-11-23T10:02:11Z): a deploy would first "
                              "wait up to 120s for it to be gone\n")
    assert not [q for m, p, q in kubeapi.requested("/api/v1/namespaces") if "watch" in q]


def test_a_namespace_that_is_not_being_deleted_says_nothing(kubeapi, api):  # noqa: F811
    out = io.StringIO()
    connection.settle_namespace(api, NS, Reporter(stream=out, tty=False))
    assert out.getvalue() == ""
