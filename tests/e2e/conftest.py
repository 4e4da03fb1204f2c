"""Fixtures the local-cluster tests share."""

from collections.abc import AsyncIterator

import pytest

from modelfleet_testbed.local.cluster import LocalCluster


@pytest.fixture
async def cluster() -> AsyncIterator[LocalCluster]:
    async with LocalCluster() as local_cluster:
        yield local_cluster
