import pytest

from ganc.config import RunConfig, apply_override, from_dict, load_config
from ganc.errors import ConfigError


def test_defaults_and_roundtrip(tmp_path):
    cfg = RunConfig()
    assert cfg.distill.lambda_recon == 100.0 and cfg.search.population == 100
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(str(p)) == cfg


def test_overrides_are_typed(tmp_path):
    cfg = load_config(None, ["distill.steps=200", "data.flip=false", "prune.targets=0.1,0.05",
                             "search.budget_macs=3e9"], store="s3://b/p")
    assert cfg.distill.steps == 200 and cfg.data.flip is False
    assert cfg.prune.targets == [0.1, 0.05] and cfg.search.budget_macs == 3e9
    assert load_config(None, ["prune.targets=0.2"]).prune.targets == [0.2]
    assert cfg.store.url == "s3://b/p"


@pytest.mark.parametrize("assignment,needle", [
    ("distill.stepz=3", "unknown field 'distill.stepz'"),
    ("distill.steps=abc", "distill.steps: expected int"),
    ("data.flip=maybe", "data.flip: expected true/false"),
    ("nosection", "expected section.field=value"),
])
def test_bad_overrides(assignment, needle):
    with pytest.raises(ConfigError) as e:
        apply_override(RunConfig(), assignment)
    assert needle in str(e.value)


def test_bad_files_name_the_file_and_field(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*none.yaml"):
        load_config(str(tmp_path / "none.yaml"))
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  rooot: x\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.data: unknown field 'rooot'"):
        load_config(str(p))
    p.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="teacher.steps: expected int"):
        from_dict({"teacher": {"steps": 1.5}})
