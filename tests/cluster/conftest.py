"""The loopback cluster (deploy/cluster/) for each test: three NATS nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.helpers import PARTITIONS, Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path, partitions=PARTITIONS)
    c.start(3)
    try:
        yield c
    finally:
        c.stop()
