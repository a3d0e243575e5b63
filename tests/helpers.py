"""Paths and markers shared by the tests."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
H2Z_MODEL = SHARED / "models" / "gan-compression-horse2zebra-compressed"
FACADES = SHARED / "data" / "facades"
H2Z_DATA = SHARED / "data" / "horse2zebra-mini"


def needs_shared(*paths: Path):
    """Skip unless every path (under ../shared) exists."""
    missing = [str(p) for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"../shared not available: {', '.join(missing)}"
                              if missing else "")
CAMVID = SHARED / "data" / "camvid"
ESPNET_WEIGHTS = SHARED / "models" / "espnet-camvid" / "espnet_p_2_q_8_camvid.pth"
