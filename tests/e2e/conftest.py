"""End-to-end tests against a real single-node cluster (scripts/cluster/local-cluster.sh)."""

from tests.fixtures.cluster import pytest_collection_modifyitems, real_cluster  # noqa: F401 - fixture + hook
