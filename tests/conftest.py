"""Suite-wide fixtures: where the repository and the shared reference material (``../shared``) are."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared`` directory beside the repository (torture corpus, anchors, reference peers)."""
    shared = REPO_ROOT.parent / "shared"
    if not shared.is_dir():
        pytest.fail(
            f"{shared} is missing: the suite expects the shared material checked out beside the repo",
            pytrace=False,
        )
    return shared
