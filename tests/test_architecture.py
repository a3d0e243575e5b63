"""The architecture is a test: `lint-imports` holds ganc's imports (function-local ones
included) to the contracts in pyproject.toml ([tool.importlinter]): the layers, the
independence of the stages, no import cycles. `make test` runs it too, before pytest."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO


def lint_imports() -> str:
    """The `lint-imports` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "lint-imports"
    return str(beside) if beside.exists() else (shutil.which("lint-imports") or "")


def test_imports_keep_the_contracts():
    exe = lint_imports()
    if not exe:
        pytest.skip("lint-imports is not installed (pip install -e '.[test]' -c constraints.txt)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    r = subprocess.run([exe, "--no-logo", "--no-cache"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"lint-imports: a contract is broken\n{r.stdout}{r.stderr}"
