"""Guard rails keyed on explicit values: the production rules follow `global.production` (not the name of the
environment), and NetworkPolicies to an external database or Redis never default to "any address"."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from tests.chart.conftest import ENVIRONMENTS, env_file, objects_of

pytestmark = pytest.mark.helm

EXTERNAL_DATABASE = {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.internal.example.com"}}
EXTERNAL_REDIS = {"redis": {"enabled": False}, "externalRedis": {"host": "redis.internal.example.com"}}


def egress_blocks(objects: list[dict]) -> dict[str, list[str]]:
    """NetworkPolicy name -> the ipBlock CIDRs its egress rules allow."""
    return {
        o["metadata"]["name"]: [
            peer["ipBlock"]["cidr"]
            for rule in o["spec"].get("egress", [])
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }


# --------------------------------------------------------------------------- external CIDRs


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_networkpolicy_allows_egress_to_any_address(render, env):
    for name, cidrs in egress_blocks(render(env)).items():
        for cidr in cidrs:
            assert ipaddress.ip_network(cidr).prefixlen > 0, f"NetworkPolicy/{name} allows egress to {cidr}"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            EXTERNAL_DATABASE,
            "externalDatabase.cidr is required with networkPolicy.enabled=true and postgresql.enabled=false",
        ),
        (EXTERNAL_REDIS, "externalRedis.cidr is required with networkPolicy.enabled=true and redis.enabled=false"),
    ],
    ids=["database", "redis"],
)
def test_external_service_behind_networkpolicies_requires_its_cidr(render_with, overrides, expected):
    result = render_with("staging", overrides)
    assert result.returncode != 0, "rendered an egress rule without an address range"
    assert expected in result.stderr, result.stderr


def test_external_service_cidrs_are_the_only_ranges_allowed(render_with):
    objects = objects_of(
        render_with(
            "staging",
            {
                **EXTERNAL_DATABASE,
                "externalDatabase": {"host": "db.internal.example.com", "cidr": "10.0.12.0/24", "port": 6432},
                **EXTERNAL_REDIS,
                "externalRedis": {"host": "redis.internal.example.com", "cidr": "10.0.13.7/32"},
            },
        )
    )
    blocks = egress_blocks(objects)
    assert blocks["moorage-backend"] == ["10.0.12.0/24", "10.0.13.7/32"]
    assert blocks["moorage-worker"] == ["10.0.12.0/24", "10.0.13.7/32"]
    assert blocks["moorage-migrations"] == ["10.0.12.0/24"]
    assert blocks["moorage-backup"] == ["10.0.12.0/24"]


def test_external_service_without_networkpolicies_needs_no_cidr(render_with):
    objects = objects_of(render_with("dev", {**EXTERNAL_DATABASE, **EXTERNAL_REDIS}))
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


def test_cidr_must_look_like_an_address_range(render_with):
    result = render_with("staging", {**EXTERNAL_DATABASE, "externalDatabase": {"host": "db", "cidr": "db.internal"}})
    assert result.returncode != 0
    assert "/externalDatabase/cidr" in result.stderr, result.stderr


# --------------------------------------------------------------------------- global.production


def test_production_rules_follow_global_production_in_any_environment(render_with):
    result = render_with("staging", {"global": {"production": True}})
    assert result.returncode != 0, "staging marked production kept its in-chart PostgreSQL"
    assert "/postgresql/enabled" in result.stderr, result.stderr


def test_the_environment_name_prod_alone_turns_on_no_production_rule(render_with):
    objects = objects_of(
        render_with(
            "prod", {"global": {"production": False}, "postgresql": {"enabled": True}, "ingress": {"enabled": False}}
        )
    )
    assert [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "moorage-postgresql"]


def test_template_guard_follows_global_production_even_without_the_schema(render_with, chart_without_schema):
    result = render_with("staging", {"global": {"production": True}}, chart=chart_without_schema)
    assert result.returncode != 0
    assert (
        "global.environment=staging requires postgresql.enabled=false and externalDatabase.host (global.production is true"
        in result.stderr
    ), result.stderr


def test_prod_environment_file_turns_production_on():
    assert yaml.safe_load(env_file("prod").read_text())["global"]["production"] is True
