"""Shared test configuration.

Fixtures that start real servers live in tests/fixtures/ and are loaded as
plugins; tool requirements (skip on a laptop, fail in CI) are in
tests/fixtures/tools.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Fixture modules shared across the suite (servers are started lazily, by the tests that ask).
pytest_plugins = [
    "tests.fixtures.docker_images",
    "tests.fixtures.kubeapi",
    "tests.fixtures.servers",
    "tests.fixtures.registry",
    "tests.fixtures.junit_schema",
]
