"""Every row of the *Bad input* table in docs/guide.md, run through the real CLI in-process:
exit status 2, exactly the row's one line on stderr, no traceback, nothing written."""
import os
import re
import shlex

import pytest

from ganc.cli import main

from .helpers import REPO

BEGIN = "<!-- bad-input table:"
END = "<!-- end of bad-input table -->"
ROW = re.compile(r"^\| `(?P<command>[^`]+)` \| `(?P<stderr>[^`]+)` \|$")

FILES = {"notyaml.yaml": "data: [1, 2\n", "list.yaml": "- 1\n", "typo.yaml": "data:\n  rooot: x\n"}


def table_rows() -> list:
    text = (REPO / "docs" / "guide.md").read_text()
    block = text[text.index(BEGIN):text.index(END)]
    rows = [m.groupdict() for m in map(ROW.match, block.splitlines()) if m]
    return rows


ROWS = table_rows()


def test_the_table_has_at_least_30_rows():
    assert len(ROWS) >= 30


def snapshot(folder) -> set:
    return {os.path.relpath(os.path.join(d, f), folder)
            for d, dirs, files in os.walk(folder) for f in files + dirs}


@pytest.mark.parametrize("row", ROWS, ids=[r["command"] for r in ROWS])
def test_bad_input_is_refused_in_one_line(row, tmp_path, monkeypatch, capsys):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "imgs").mkdir()
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    argv = shlex.split(row["command"])
    assert argv[0] == "ganc"
    assert main(argv[1:]) == 2
    out, err = capsys.readouterr()
    assert err == row["stderr"] + "\n", err
    assert "Traceback" not in out + err
    assert snapshot(tmp_path) == before
