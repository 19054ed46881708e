"""Deploy plan decisions: pure, no Docker, no cluster."""


from moorage import plan
from moorage.plan import ImageFacts, ReleaseState

IMAGES_BUILT = [ImageFacts("backend", "moorage/backend:aaa", True, True),
                ImageFacts("frontend", "moorage/frontend:bbb", True, True)]


def decide(**kw):
    args = dict(environment="dev", namespace="moorage-dev", context="kind-dev", cluster="kind",
                delivery="kind-load", images=IMAGES_BUILT, release=ReleaseState(3, "deployed", "d1"), digest="d1")
    args.update(kw)
    return plan.decide(**args)


def test_nothing_changed_means_nothing_to_do():
    p = decide()
    assert p.build == () and p.deliver == () and not p.upgrade
    assert "release is up to date" in "\n".join(p.lines())


def test_a_changed_image_is_built_delivered_and_upgraded():
    images = [ImageFacts("backend", "moorage/backend:new", False, False), IMAGES_BUILT[1]]
    p = decide(images=images, digest="d2")
    assert p.build == ("backend",) and p.reuse == ("frontend",)
    assert p.deliver == ("backend",) and p.upgrade and p.rollback_to == 3


def test_image_built_but_missing_in_cluster_is_only_delivered():
    images = [ImageFacts("backend", "moorage/backend:aaa", True, False), IMAGES_BUILT[1]]
    p = decide(images=images)
    assert p.build == () and p.deliver == ("backend",)


def test_building_into_the_cluster_engine_delivers_nothing():
    images = [ImageFacts("backend", "moorage/backend:new", False, False)]
    p = decide(images=images, delivery="none", cluster="minikube", digest="d2")
    assert p.build == ("backend",) and p.deliver == ()
    assert "deliver  nothing: the cluster reads the build engine directly" in p.lines()


def test_first_install_has_no_rollback_target():
    p = decide(release=None)
    assert p.upgrade and p.first_install and p.rollback_to is None
    assert any(line.startswith("helm     install") for line in p.lines())


def test_values_change_alone_upgrades():
    p = decide(digest="other")
    assert p.upgrade and p.build == () and p.rollback_to == 3


def test_failed_release_is_replaced_and_not_a_rollback_target():
    p = decide(release=ReleaseState(4, "failed", "d1"))
    assert p.upgrade and p.rollback_to is None and any("revision 4 failed" in n for n in p.notes)


def test_force_rebuilds_everything():
    p = decide(force=True)
    assert p.build == ("backend", "frontend") and p.upgrade


def test_release_digest_changes_with_chart_and_values(tmp_path):
    (tmp_path / "Chart.yaml").write_text("name: x\n")
    first = plan.release_digest(tmp_path, [{"a": 1}])
    assert plan.release_digest(tmp_path, [{"a": 1}]) == first
    assert plan.release_digest(tmp_path, [{"a": 2}]) != first
    (tmp_path / "values.yaml").write_text("b: 1\n")
    assert plan.release_digest(tmp_path, [{"a": 1}]) != first


def test_a_failed_upgrade_that_migrated_nothing_may_roll_back():
    check = plan.schema_check(["0002"], ["0002"], ["0003"], ["0003"], compatible=[])
    assert not check.moved and check.previous_code_fits and check.applied == ()


def test_a_failed_upgrade_whose_migration_ran_holds_the_previous_code():
    check = plan.schema_check(["0002"], ["0004"], ["0003", "0004"], [], compatible=["0003"])
    assert check.moved and check.applied == ("0003", "0004")
    assert check.incompatible == ("0004",) and not check.previous_code_fits


def test_expand_only_revisions_declared_compatible_let_the_previous_code_back():
    check = plan.schema_check(["0002"], ["0003"], ["0003"], [], compatible=["0003"])
    assert check.moved and check.previous_code_fits
