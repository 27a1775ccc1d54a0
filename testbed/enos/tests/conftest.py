"""Shared paths of the deployment package's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TOPOLOGIES = REPO / "testbed" / "topologies"


@pytest.fixture
def testbed_bin() -> Path:
    """The built ``testbed`` binary (FOGMARKET_BIN_DIR, default target/debug); ``just test``
    builds it before running these tests."""
    bin_dir = Path(os.environ.get("FOGMARKET_BIN_DIR", REPO / "target" / "debug"))
    path = bin_dir / "testbed"
    if not path.exists():
        pytest.fail(f"{path} is missing: build it first (cargo build -p testbed)")
    return path
