"""The criteria registry (FID, KID, mIoU): directions, one-line lookups, the one validation
of ``search.criterion`` and no criterion-name comparison outside the registry."""
from __future__ import annotations

import ast
import pathlib

import pytest

from ganc import criteria
from ganc.config import check_criterion as check_run_criterion, from_dict
from ganc.criteria import check_criterion, get_criterion
from ganc.errors import ConfigError

GANC = pathlib.Path(__file__).resolve().parents[1] / "ganc"
REGISTRY = GANC / "criteria.py"


def test_registry_lists_fid_kid_miou_with_their_directions():
    assert criteria.names() == ["fid", "kid", "miou"]
    assert criteria.names(searchable=True) == ["fid", "miou"]
    assert [(c.name, c.mode) for c in criteria.criteria()] == [
        ("fid", "min"), ("kid", "min"), ("miou", "max")]
    assert get_criterion("miou").needs == criteria.SEGMENTER
    assert get_criterion("fid").needs == get_criterion("kid").needs == criteria.INCEPTION
    assert criteria.minimised() == ["fid", "kid"]
    fid, miou = get_criterion("fid"), get_criterion("miou")
    assert fid.better(40.0, 50.0) and not fid.better(50.0, 40.0)
    assert miou.better(50.0, 40.0) and fid.best_of([3, 1, 2]) == 1 and miou.best_of([3, 1]) == 3
    assert (miou.title, miou.direction, miou.verb) == ("ESPNet-CamVid mIoU",
                                                       "higher is better", "raise")


def test_unknown_criterion_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"^unknown criterion 'psnr'; known: fid, kid, miou$"):
        get_criterion("psnr")
    with pytest.raises(ConfigError, match="already registered"):
        criteria.register(get_criterion("fid"))


def test_the_one_validation_refuses_what_was_refused_before():
    # names: only searchable criteria (KID is scored on the Pareto sets only)
    for name in ("psnr", "kid"):
        with pytest.raises(ConfigError,
                           match=rf"^search.criterion '{name}' is not one of: fid, miou$"):
            check_criterion(name)
    # mIoU needs label maps (the segmenter's ground truth)
    with pytest.raises(ConfigError, match=r"^search.criterion miou needs data with label "
                                          r"maps \(data.kind camvid\); data.kind is 'aligned'$"):
        check_run_criterion(from_dict({"search": {"criterion": "miou"}}))
    camvid = from_dict({"data": {"kind": "camvid"}, "search": {"criterion": "miou"}})
    assert check_run_criterion(camvid) is camvid
    # a maximised criterion only with the evolution searcher (NSGA-II minimises)
    with pytest.raises(ConfigError, match=r"^search.criterion 'miou' works with search.method "
                                          r"evolution; nsga2 minimises FID$"):
        check_run_criterion(camvid, "nsga2")
    check_run_criterion(camvid, "evolution")
    check_criterion("fid", data_kind="aligned", method="nsga2")


def test_search_callers_go_through_the_one_validation():
    from ganc.search.driver import criterion_mode, criterion_of
    camvid = from_dict({"data": {"kind": "camvid"}, "search": {"criterion": "miou"}})
    assert criterion_of(camvid) == ("miou", "max") and criterion_mode("fid") == "min"
    with pytest.raises(ConfigError, match=r"works with search.method evolution; nsga2"):
        criterion_of(camvid, "nsga2")


def _comparisons(path: pathlib.Path, root: pathlib.Path = GANC.parent) -> list[str]:
    """``x == "fid"``, ``"miou" != x``, ``x in ("fid", ...)``, ``"kid" in x``: a
    criterion's name compared with something."""
    names = set(criteria.names())
    text = path.read_text()

    def strings(node) -> set:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return {e.value for e in node.elts if isinstance(e, ast.Constant)}
        return set()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops):
            if names & set().union(*(strings(x) for x in [node.left, *node.comparators])):
                found.append(f"{path.relative_to(root)}:{node.lineno}: "
                             f"{ast.get_source_segment(text, node)}")
    return found


def test_no_criterion_name_is_compared_outside_the_registry():
    found = [hit for p in sorted(GANC.rglob("*.py")) if p != REGISTRY
             for hit in _comparisons(p)]
    assert not found, "criterion names compared outside ganc/criteria.py (use " \
                      "ganc.criteria.get_criterion and its attributes):\n" + "\n".join(found)


def test_the_comparison_finder_finds_comparisons(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if c == "miou" or "fid" != c or c in ("kid", "x") or "miou" in row:\n'
                   '    pass\nfor k in ("fid", "kid"):\n    d = {"fid": 1}\n')
    assert [h.split(": ", 1)[1] for h in _comparisons(bad, tmp_path)] == [
        'c == "miou"', '"fid" != c', 'c in ("kid", "x")', '"miou" in row']

