"""Tests only a Redis Cluster can run: they start the local cluster of ``tests/redis_cluster.py``.

They run with ``ABPILOT_TEST_BACKENDS=redis-cluster`` (as ``.ci/run`` does, next to the store
contract suite and the reliability tests on the cluster), not in the README's test command.
"""

from tests.conftest import BACKENDS

collect_ignore_glob = [] if "redis-cluster" in BACKENDS else ["test_*.py"]
