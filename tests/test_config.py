import pytest

from ganc.config import RunConfig, apply_override, from_dict, load_config
from ganc.errors import ConfigError

from .helpers import REPO


def test_defaults_and_roundtrip(tmp_path):
    import yaml
    cfg = RunConfig()
    assert cfg.distill.lambda_recon == 100.0 and cfg.search.population == 100
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(str(p)) == cfg
    # a config unlike the defaults in every kind of field (int, bool, list, float, string,
    # mapping, in several sections) comes back from its YAML as it was, not as defaults
    changed = load_config(None, ["distill.steps=200", "data.flip=false",
                                 "prune.targets=0.1,0.05", "search.budget_macs=3e9",
                                 "model.teacher_weights=released.pth",
                                 "scale.resources={accel: 1}", "data.root=/data/facades"],
                          store="s3://b/p")
    assert changed != cfg
    p.write_text(changed.to_yaml())
    again = load_config(str(p))
    assert again == changed and again.to_dict() == changed.to_dict()
    written = yaml.safe_load(p.read_text())
    assert (written["distill"]["steps"], written["data"]["flip"], written["prune"]["targets"],
            written["search"]["budget_macs"], written["model"]["teacher_weights"],
            written["scale"]["resources"], written["data"]["root"], written["store"]["url"]) == (
        200, False, [0.1, 0.05], 3e9, "released.pth", {"accel": 1.0}, "/data/facades",
        "s3://b/p")


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


PIX2PIX_PRESETS = ["facades", "edges2shoes", "edges2shoes-r", "map2sat"]


def preset(name: str):
    return load_config(str(REPO / "configs" / f"{name}.yaml"))


@pytest.mark.parametrize("name", PIX2PIX_PRESETS)
def test_pix2pix_presets_train_with_the_reference_discriminator(name):
    """GAN Compression's pix2pix D in every stage: PatchGAN n_layers 3, ndf 128, instance
    norm, hinge loss; fp32; the pix2pix presets' mutation probability 0.3."""
    cfg = preset(name)
    m = cfg.model
    assert (cfg.data.kind, m.netD, m.n_layers_D, m.ndf, m.norm_D, m.gan_mode) == (
        "aligned", "n_layers", 3, 128, "instance", "hinge")
    assert cfg.scale.amp is False and cfg.search.mutation_prob == 0.3


def test_reference_presets_search_and_precision():
    h2z = preset("horse2zebra")
    assert (h2z.search.mutation_prob, h2z.search.weighted_sample, h2z.scale.amp) == (
        0.4, 2.0, False)
    assert (h2z.model.ndf, h2z.model.norm_D, h2z.model.gan_mode) == (64, "instance", "lsgan")
    e2s = preset("edges2shoes-r")
    d = e2s.data
    assert (d.load_size, d.crop_size, d.flip, d.batch_size, d.direction) == (
        286, 256, True, 4, "AtoB")
    assert (e2s.search.budget_macs, e2s.search.weighted_sample, e2s.search.population) == (
        4.9e9, 1.0, 100)
    m2s = preset("map2sat")
    assert (m2s.data.direction, m2s.search.budget_macs, m2s.teacher.lambda_L1,
            m2s.distill.lambda_recon, m2s.distill.lambda_distill) == ("BtoA", 4.6e9, 10.0,
                                                                      10.0, 0.01)
    assert RunConfig().scale.amp is False        # fp32 unless asked


def test_horse2zebra_real_preset_loads_and_validates():
    """The released compressed model as the teacher, the 8-channel space, the 1.4G budget
    at the full 256x256, a 100-image search split and a 200-image val split of trainA
    scored against every zebra, KID on."""
    from ganc.config import validate
    from ganc.modelio import teacher_spec
    from ganc.space import get_space
    cfg = preset("horse2zebra_real")
    assert validate(cfg) is cfg
    m, d = cfg.model, cfg.data
    assert (m.teacher, m.teacher_config, m.student, m.student_ngf, m.search_space) == (
        "sub_mobile_resnet_9blocks", "16_16_32_16_32_32_16_16", "super_mobile_resnet_9blocks",
        32, "channels-32-to-8")
    assert m.teacher_weights == ("../shared/models/gan-compression-horse2zebra-compressed/"
                                 "latest_net_G.pth")
    assert teacher_spec(m).config == "16_16_32_16_32_32_16_16"
    assert get_space(m.search_space).max_width == m.student_ngf
    assert (d.kind, d.root, d.crop_size, d.search_split, d.val_split, d.split_targets,
            d.fid_real) == ("unaligned", "../shared/data/horse2zebra", 256, 100, 200, False,
                            "trainB")
    assert (cfg.search.budget_macs, cfg.scale.cpu_crop_size, cfg.fid.kid) == (1.4e9, 0, True)
    assert (m.gan_mode, cfg.distill.lambda_recon, cfg.distill.lambda_distill) == (
        "lsgan", 10.0, 0.01)
    for budget in ("1.0e9", "2.0e9"):
        assert load_config(str(REPO / "configs" / "horse2zebra_real.yaml"),
                           [f"search.budget_macs={budget}"]).search.budget_macs == float(budget)
    # --set keeps a channel config as typed (YAML alone would read it as one integer)
    assert load_config(None, ["model.teacher_config=16_16_32_16_32_32_16_16"]
                       ).model.teacher_config == "16_16_32_16_32_32_16_16"


def _numeric_fields(obj=None, prefix=""):
    """(section object, field name, dotted path, base type) of every numeric field."""
    import dataclasses
    import typing
    obj = obj or RunConfig()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _numeric_fields(value, f"{prefix}{f.name}.")
            continue
        hint = typing.get_type_hints(type(obj))[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if args[0] in (int, float):
            yield obj, f.name, prefix + f.name, args[0]


def test_every_numeric_field_refuses_nan_inf_and_declares_a_range():
    from ganc.config import _declared, validate
    unbounded = []
    for _, name, path, base in _numeric_fields():
        for bad in (".nan", ".inf", "-.inf"):
            with pytest.raises(ConfigError, match=rf"^{path}: "):
                load_config(None, [f"{path}={bad}"])
        cfg = RunConfig()
        section = cfg
        for part in path.split(".")[:-1]:
            section = getattr(section, part)
        setattr(section, name, float("nan"))       # set behind the loader's back
        with pytest.raises(ConfigError, match=rf"^{path}: nan is not a finite number"):
            validate(cfg)
        if _declared(type(section), name)[1] is None:
            unbounded.append(path)
    assert unbounded == ["prune.base"]               # a logit offset: any finite value


@pytest.mark.parametrize("assignment,message", [
    ("data.batch_size=0", "data.batch_size: 0 is out of range: must be >= 1"),
    ("search.mutation_prob=-0.1", "search.mutation_prob: -0.1 is out of range: must be in [0, 1]"),
    ("prune.targets=0.5,0", "prune.targets: item 0 is out of range: must be in (0, 1]"),
    ("teacher.eval_every=-2", "teacher.eval_every: -2 is out of range: must be >= -1"),
])
def test_ranges_are_checked_where_declared(assignment, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [assignment])
    assert str(e.value) == message
    ok = assignment.split("=")[0] + "=" + {"data.batch_size": "1", "search.mutation_prob": "1",
                                           "prune.targets": "1", "teacher.eval_every": "-1"}[
        assignment.split("=")[0]]
    load_config(None, [ok])                          # the bound itself is allowed
