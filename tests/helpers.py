"""Paths and markers shared by the tests."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
H2Z_MODEL = SHARED / "models" / "gan-compression-horse2zebra-compressed"
FACADES = SHARED / "data" / "facades"
H2Z_DATA = SHARED / "data" / "horse2zebra-mini"
H2Z_FULL = SHARED / "data" / "horse2zebra"          # trainA 1,067 horses, trainB 400 zebras


def needs_shared(*paths: Path):
    """Skip unless every path (under ../shared) exists."""
    missing = [str(p) for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=f"../shared not available: {', '.join(missing)}"
                              if missing else "")
CAMVID = SHARED / "data" / "camvid"
ESPNET_WEIGHTS = SHARED / "models" / "espnet-camvid" / "espnet_p_2_q_8_camvid.pth"


def demo_data_on_s3(url: str, local_dir: Path, n: int = 12, size: int = 64) -> str:
    """Paired demo data made locally with `ganc make-demo-data` and uploaded under ``url``
    (``s3://bucket/prefix``, on the S3 server of the environment), as a user would with
    `aws s3 sync`; returns ``url``."""
    import subprocess
    import sys

    import s3fs
    out = subprocess.run([sys.executable, "-m", "ganc", "make-demo-data", "--kind", "paired",
                          "--out", str(local_dir), "--n", str(n), "--n-test", "4",
                          "--size", str(size)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    s3fs.S3FileSystem().put(str(local_dir), url[len("s3://"):], recursive=True)
    return url


def linked_subset(src: Path, root: Path, counts: dict) -> Path:
    """``root`` with the first ``counts[split]`` files of each ``src/<split>`` linked in
    (a few images of a shared dataset, nothing copied); skips when ``src`` is missing."""
    if not src.is_dir():
        pytest.skip(f"needs {src} (../shared is missing)")
    for split, n in counts.items():
        (root / split).mkdir()
        for name in sorted(p.name for p in (src / split).iterdir())[:n]:
            (root / split / name).symlink_to(src / split / name)
    return root
