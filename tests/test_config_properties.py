"""Property-based tests (hypothesis) of what a user types into a config: random
``--set KEY=VALUE`` assignments (keys from RunConfig's real fields, whole sections and
unknown names; values of every YAML shape, huge numbers, NaN, broken brackets) and random
YAML documents, through the functions the CLI calls (:func:`ganc.config.load_config`).
Each gives a valid RunConfig that saves and loads back as it was, or one ConfigError line
naming the field (``--set`` for an unknown one) or the file; never another exception.

``EXAMPLES`` random inputs per property (printed with ``-s``); the cases the properties
found are pinned below them as plain tests.
"""
from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ganc.config import RunConfig, load_config
from ganc.errors import ConfigError

EXAMPLES = 300
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _fields(obj, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += [prefix + f.name] + _fields(value, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


FIELDS = _fields(RunConfig())                       # data, data.root, ..., name, seed
SECTIONS = [f.name for f in dataclasses.fields(RunConfig)
            if dataclasses.is_dataclass(getattr(RunConfig(), f.name))]
SECTION_FIELDS = {s: [f.name for f in dataclasses.fields(getattr(RunConfig(), s))]
                  for s in SECTIONS}

# ---------------------------------------------------------------- strategies
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 600),
                    st.integers(2 ** 1020, 2 ** 1030),       # past the largest float
                    st.floats(), st.floats(0, 1), st.text(max_size=12), st.dates(),
                    st.sampled_from(["AtoB", "BtoA", "camvid", "unaligned", "fid", "miou",
                                     "teacher", "search", "channels-32-to-8", "3e9", "0.5"]))
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip() \
        .removesuffix("\n...").removesuffix("...").strip()


raw_values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats().map(repr),
    st.sampled_from([".nan", "-.inf", ".inf", "nan", "1e309", "-0", "0x1F", "1_000", "3e9",
                     "[3e9,2e9,1e9]", "[0.1, .nan]", "{accel: 1}", "{CPU: 1}", "[[1]]", "[",
                     "]", "{", "[a", "{a: [1, {b: }", "null", "~", "", "2020-13-45", "1:30",
                     "!!binary abc", "!!python/name:os.system", "&a [*a]", "1" + "0" * 5000,
                     "[" * 200 + "]" * 200, "yes", "off", "'quoted'", '"a\\nb"']),
    yaml_values.map(_flow),
    st.text(alphabet="[]{},:-. 0123456789abe'\"&*!#|>", max_size=24),
)
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS).map(lambda k: k + ".x"),
                 st.sampled_from(["nosection.field", "data.rooot", "", ".", "data.", "DATA.root",
                                  " seed ", "seed.x.y"]),
                 st.text(max_size=16))
assignments = st.one_of(st.tuples(keys, raw_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
                        st.text(max_size=20))


def documents():
    """Random config mappings: real sections with real and unknown fields, random values."""
    def section(name):
        return st.dictionaries(st.sampled_from(SECTION_FIELDS[name]) | st.text(max_size=6),
                               yaml_values, max_size=4)
    sections = st.fixed_dictionaries({}, optional={s: section(s) | yaml_values
                                                   for s in SECTIONS})
    top = st.fixed_dictionaries({}, optional={"name": yaml_values, "seed": yaml_values,
                                              "extra": yaml_values})
    return st.tuples(sections, top).map(lambda t: {**t[0], **t[1]})


# ---------------------------------------------------------------- the properties
def _one_line(msg: str) -> None:
    assert msg and len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, msg
    assert len(msg) < 2000, msg


def _names_a_field(msg: str, extra=()) -> bool:
    return any(msg.startswith(n) for n in (*extra, *FIELDS))


def _reloads(cfg: RunConfig, path) -> None:
    """A config that loaded saves (as every run does) and loads back as it was."""
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    assert load_config(str(path)).to_dict() == cfg.to_dict()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


@PROPERTY
@given(st.lists(assignments, min_size=1, max_size=3))
@example(["name=0000-00-00"])               # found by this property: a YAML date error
@example(["search.budgets=[1" + "0" * 400 + "]"])
def test_random_set_values_give_a_config_or_one_line_naming_the_field(folder, sets):
    try:
        cfg = load_config(None, sets)
    except ConfigError as e:
        msg = str(e)
        _one_line(msg)
        keys = [a.split("=", 1)[0].strip() for a in sets if "=" in a]
        assert msg.startswith("--set ") or _names_a_field(msg, keys), (sets, msg)
        return
    _reloads(cfg, folder / "set.yaml")


@PROPERTY
@given(documents())
@example({"search": {"budgets": [2 ** 1100]}})   # an int past the largest float
def test_random_yaml_documents_give_a_config_or_one_line_naming_the_field(folder, doc):
    path = folder / "doc.yaml"
    try:
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    except ValueError:          # an int past Python's 4300-digit str limit: not writable
        return
    try:
        cfg = load_config(str(path))
    except ConfigError as e:
        msg = str(e)
        _one_line(msg)
        assert _names_a_field(msg, [str(path)]), (doc, msg)
        return
    _reloads(cfg, folder / "doc-again.yaml")


yaml_texts = st.one_of(st.text(max_size=80),
                       st.text(alphabet="abdes:-[]{},.&*!|>'\"#%@`\n\t 0123456789",
                               max_size=80),
                       st.binary(max_size=40).map(lambda b: b.decode("latin-1")))


@PROPERTY
@given(st.one_of(yaml_texts.map(lambda t: t.encode("utf-8")), st.binary(max_size=60)))
@example(b"\x80")                          # found by this property: not UTF-8
@example(b"seed: 2020-13-45\n")
def test_random_yaml_text_gives_a_config_or_one_line_naming_the_field(folder, data):
    path = folder / "text.yaml"
    path.write_bytes(data)
    try:
        cfg = load_config(str(path))
    except ConfigError as e:
        msg = str(e)
        _one_line(msg)
        assert _names_a_field(msg, [str(path), f"config file {path}"]), (data, msg)
        return
    _reloads(cfg, folder / "text-again.yaml")


def test_the_example_count_is_declared():
    print(f"hypothesis: {EXAMPLES} examples per property, 3 properties")
    assert PROPERTY.max_examples == EXAMPLES >= 300 and PROPERTY.deadline is None


# ---------------------------------------------------------------- what the properties found
def _refused(sets=(), text=None, tmp_path=None) -> str:
    path = None
    if text is not None:
        path = tmp_path / "c.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as e:
        load_config(str(path) if path else None, list(sets))
    msg = str(e.value)
    _one_line(msg)
    return msg


def test_the_guides_budgets_list_is_read_as_numbers(tmp_path):
    # YAML 1.1 reads 3e9 (no dot) as text: a list of them was refused as "not a number"
    want = [3e9, 2e9, 1e9]
    assert load_config(None, ["search.budgets=[3e9,2e9,1e9]"]).search.budgets == want
    assert load_config(None, ["search.budgets=[3e9, 2e9, 1e9]"]).search.budgets == want
    assert load_config(None, ["search.budgets=3e9,2e9,1e9"]).search.budgets == want
    path = tmp_path / "b.yaml"
    path.write_text("search:\n  budgets: [3e9, 2e9, 1e9]\n")
    assert load_config(str(path)).search.budgets == want
    assert load_config(None, ["prune.targets=[0.1, 5e-2]"]).prune.targets == [0.1, 0.05]
    assert _refused(["search.budgets=[3e9, abc]"]) == "search.budgets: item 'abc' is not a number"


@pytest.mark.parametrize("sets, line", [
    (["data.direction=AB"], "data.direction: 'AB' is not one of: AtoB, BtoA"),
    (["data.crop_size=250"],
     "data.crop_size: 250 is not a multiple of 4 (the generators downsample twice by 2)"),
    (["scale.cpu_crop_size=130"],
     "scale.cpu_crop_size: 130 is not a multiple of 4 (the generators downsample twice by 2)"),
    (["data.kind=camvid", "data.crop_size=200"],
     "data.crop_size: 200 wide and data.aspect_ratio 0.75 make 200x150 (WxH) images; "
     "label-map data (SPADE) needs both sides multiples of 32"),
    (["data.kind=camvid", "data.aspect_ratio=0.8"],
     "data.crop_size: 256 wide and data.aspect_ratio 0.8 make 256x205 (WxH) images; "
     "label-map data (SPADE) needs both sides multiples of 32"),
    (["model.search_space=channels-99"],
     "model.search_space: 'channels-99' is not one of: channels-32-to-8, channels-64-cycleGAN, "
     "channels-64-pix2pix, munit-channels-64, spade-channels-48, spade-channels-64, "
     "unet128-channels-64, unet256-channels-64 (or set distill.space_widths)"),
    (["pipeline.stages=[teacher, distill]"],
     "pipeline.stages: unknown stage 'distill'; stages: teacher, supernet, search, prune, "
     "finetune, export, report"),
])
def test_fields_the_workers_checked_are_refused_at_load(sets, line):
    # before: accepted here; the first Ray worker to build a dataset, a net or the space failed
    assert _refused(sets) == line


def test_fields_checked_at_load_accept_what_the_nets_take():
    assert load_config(None, ["data.direction=BtoA"]).data.direction == "BtoA"
    assert load_config(None, ["data.kind=camvid", "data.crop_size=128"]).data.crop_size == 128
    assert load_config(None, ["model.search_space=nope", "distill.space_widths=[16,8]"]) \
        .distill.space_widths == [16, 8]


@pytest.mark.parametrize("sets, line", [
    (["pipeline.stages=[a"], "pipeline.stages: unknown stage '[a'; stages: teacher, supernet, "
                             "search, prune, finetune, export, report"),
    (["distill.distill_points=[{a: 1}]"], "distill.distill_points: item {'a': 1} is not a name"),
    (["search.budgets=[1" + "0" * 400 + "]"],
     "search.budgets: item 1000000000000000000000000000...00000000000000000000000000000 is not "
     "a finite number"),
    (["name=[" + "x, " * 5000 + "]"], "name: expected a string, got ['x', 'x', 'x', 'x', 'x', "
                                      "'x', ...]"),
    (['scale.resources={"a\\nb": 1}'],
     "scale.resources: resource name 'a\\nb' is empty or not printable"),
])
def test_set_values_that_escaped_are_one_line(sets, line):
    assert _refused(sets) == line


@pytest.mark.parametrize("text, line", [
    ("seed: 2020-13-45\n", "config file {} is not valid YAML (month must be in 1..12)"),
    ("seed: 1" + "0" * 5000 + "\n", "config file {} is not valid YAML (Exceeds the limit (4300 "
     "digits) for integer string conversion: value has 5001 digits; use "
     "sys.set_int_max_str_digits() to increase the limit)"),
    (b"name: caf\xe9\n", "config file {} is not UTF-8 text (byte 9)"),
    ("data: " + "[" * 600 + "]" * 600 + "\n",
     "config file {} is not valid YAML (nested too deeply)"),
])
def test_yaml_files_that_escaped_are_one_line(tmp_path, text, line):
    assert _refused(text=text, tmp_path=tmp_path) == line.format(tmp_path / "c.yaml")


def test_an_empty_section_is_its_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  # root: /data/facades\nsearch:\n")
    assert load_config(str(path)) == RunConfig()
