"""Checks before a command starts (issue 28, item 1): ``ganc.preflight``, ``ganc.data.check``
and ``ganc check``. Starting Ray is replaced by a failure here, so a command that would
start it before refusing (what 4ea98bf did: data, layout and upstream problems surfaced in
Ray workers, after ``placement.json`` was written) fails these tests at once."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ganc import context
from ganc.cli import main
from ganc.config import from_dict
from ganc.data.check import SAMPLE, check_dataset, folders, spread
from ganc.data.demo import make_demo_data


N_TRAIN = 12                       # 12 train + 4 val A|B images of 32x16


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch, tmp_path, request):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    if "ray_local" in request.fixturenames:       # the one test that runs stages
        return

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the checks refused the command")
    monkeypatch.setattr(context, "init_local", refuse)


@pytest.fixture(scope="module")
def paired_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "paired"
    make_demo_data("paired", N_TRAIN, 16, out, seed=0, n_test=4)
    return out


@pytest.fixture
def data(paired_data, tmp_path):
    """A copy of the paired dataset this test may break."""
    return shutil.copytree(paired_data, tmp_path / "d")


def tiny(store, root) -> list[str]:
    return ["--store", store, "--set", f"data.root={root}", "--set", "data.load_size=24",
            "--set", "data.crop_size=24", "--set", "model.teacher_ngf=8",
            "--set", "model.student_ngf=8", "--set", "distill.space_widths=[8,4]"]


def truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def test_the_folders_a_run_reads_by_layout():
    def rels(**data):
        return [f.rel for f in folders(from_dict({"data": data}).data)]
    assert rels(kind="aligned") == ["train", "val"]
    assert rels(kind="aligned", val_split=0.2) == ["train"]
    assert rels(kind="unaligned", eval_split="test", fid_real="trainB, testB") == [
        "trainA", "trainB", "testA", "testB"]
    assert rels(kind="unaligned", eval_split="test", direction="BtoA") == [
        "trainA", "trainB", "testB", "testA"]
    assert rels(kind="camvid", crop_size=64) == ["train", "trainannot", "val", "valannot"]
    # what a stage reads: the teacher only its training split (its val PSNR is optional);
    # a scoring stage the eval split unless a search split is held out; the report always

    def reading(stages, **data):
        return [f.rel for f in folders(from_dict({"data": data}).data, stages)]
    assert reading(["teacher"], fid_real="x") == ["train"]
    assert reading(["supernet", "search"], search_split=2, fid_real="x") == ["train", "x"]
    assert reading(["search"]) == ["train", "val"]
    assert reading(["teacher", "report"], search_split=2) == ["train", "val"]
    assert spread(list(range(12)), 4) == [0, 4, 7, 11] and spread([1, 2], 8) == [1, 2]


def test_a_sample_is_decoded_before_a_command_and_every_image_by_check(data):
    cfg = from_dict({"data": {"root": str(data), "crop_size": 16}})
    not_sampled = sorted(set(range(N_TRAIN)) - set(spread(list(range(N_TRAIN)), SAMPLE)))
    truncate(data / "train" / f"{not_sampled[0]:05d}.png")
    sampled = check_dataset(cfg.data)
    assert not sampled.problems
    assert f"data train/ (training): {N_TRAIN} images, {SAMPLE} decoded, sizes 32x16" \
        in sampled.checked
    full = check_dataset(cfg.data, full=True)
    assert [str(p) for p in full.problems] == [
        f"cannot read image {data}/train/{not_sampled[0]:05d}.png: image file is truncated"]


def test_check_prints_what_it_checked_and_writes_nothing(data, tmp_path, capsys):
    store = tmp_path / "store"
    code, out, err = run(capsys, "check", *tiny(store, data))
    assert (code, err) == (0, ""), err
    lines = out.splitlines()
    assert [ln.split()[1].rstrip(":") for ln in lines] == [
        "config", "store", "teacher", "budgets", "discriminator", "prune", "data", "data"]
    assert f"ok  data train/ (training): {N_TRAIN} images, {N_TRAIN} decoded, sizes 32x16" \
        in lines
    assert "run file://" in out and "new (nothing is written" in out
    assert not store.exists()


def test_check_names_every_problem_in_one_line_each(data, tmp_path, capsys):
    shutil.rmtree(data / "val")
    truncate(data / "train" / "00003.png")
    (data / "train" / "00005.png").write_bytes(b"not an image")
    wrong = tmp_path / "wrong.pt"
    torch.save({"model.0.weight": torch.zeros(1)}, wrong)
    code, out, err = run(capsys, "check", *tiny(tmp_path / "store", data),
                         "--set", f"model.teacher_weights={wrong}",
                         "--set", f"data.search_split={N_TRAIN}")
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert all(ln.startswith("ganc check: error: ") for ln in lines), err
    assert len(lines) == 5, err
    assert f"model.teacher_weights: weights {wrong} do not fit resnet_9blocks" in lines[0]
    assert lines[1].endswith(f"data.search_split {N_TRAIN} holds out {N_TRAIN} of the "
                             f"{N_TRAIN} images of 'train'; at least one must be left to "
                             "train on")
    assert f"{data}/train/00003.png: image file is truncated" in lines[2]
    assert f"cannot read image {data}/train/00005.png" in lines[3]
    assert lines[4] == (f"ganc check: error: data.root '{data}': evaluation "
                        "(data.eval_split) folder val/ not found")


def _break_val(data):
    shutil.rmtree(data / "val")


def _break_image(data):
    (data / "train" / "00000.png").write_bytes(b"not an image")


def _odd_width(data):
    from PIL import Image
    Image.new("RGB", (33, 16)).save(data / "train" / "00000.png")


REFUSED = {
    "compress, no val folder": (
        ["compress"], _break_val, [], "evaluation (data.eval_split) folder val/ not found"),
    "compress, an unreadable image": (
        ["compress"], _break_image, [], "train/00000.png: cannot identify image file"),
    "compress, an odd-width A|B image": (
        ["compress"], _odd_width, [], "has odd width 33"),
    "compress, search split holds out every image": (
        ["compress"], None, ["--set", f"data.search_split={N_TRAIN}"],
        f"data.search_split {N_TRAIN} holds out {N_TRAIN} of the {N_TRAIN} images"),
    "compress, crop too small for the discriminator": (
        ["compress"], None, ["--set", "data.crop_size=16", "--set", "data.load_size=16"],
        "data.crop_size 16: the discriminator (model.netD n_layers, model.n_layers_D 3) "
        "cannot take 16x16 (WxH) images"),
    "prune, CPU crop too small for the discriminator": (
        ["prune"], None, ["--set", "scale.cpu_crop_size=16",
                          "--set", "model.teacher_weights=TEACHER"],
        "scale.cpu_crop_size 16: the discriminator (model.netD n_layers"),
    "prune, agents' crops too small for the discriminator": (
        ["prune"], None, ["--set", "prune.crop_size=16",
                          "--set", "model.teacher_weights=TEACHER"],
        "prune.crop_size 16: the discriminator (model.netD n_layers, model.n_layers_D 3) "
        "cannot take 16x16 (WxH) images"),
    "train-supernet, training crops too small for the discriminator": (
        ["train-supernet"], None, ["--set", "data.train_crop_size=16",
                                   "--set", "model.teacher_weights=TEACHER"],
        "data.train_crop_size 16: the discriminator (model.netD n_layers, model.n_layers_D 3) "
        "cannot take 16x16 (WxH) images"),
    "train-teacher, U-Net training crops it cannot halve 7 times": (
        ["train-teacher"], None, ["--set", "model.teacher=unet_128", "--set", "model.norm=batch",
                                  "--set", "model.n_layers_D=2",
                                  "--set", "data.train_crop_size=20"],
        "data.train_crop_size 20: model.teacher unet_128 (U-Net) takes sides that are "
        "multiples of 128 only; set a multiple of 128 (at most data.load_size) or 0 (train "
        "at data.crop_size)"),
    "train-teacher, SPADE data with a PatchGAN": (
        ["train-teacher"], None, ["--set", "data.kind=camvid", "--set", "data.crop_size=128",
                                  "--set", "model.teacher=spade"],
        "model.netD 'n_layers': SPADE training uses the multiscale discriminator"),
    "train-supernet, no teacher": (
        ["train-supernet"], None, [], "no teacher: ganc train-supernet reads the teacher "
        "stage's teacher/final.pt, and run file://"),
    "search, no supernet": (
        ["search"], None, [], "ganc search reads the supernet stage's supernet/final.pt"),
    "finetune --local, no supernet": (
        ["finetune", "--local", "--subnet-config", "8_8_8_8_8_8_8_8"], None, [],
        "ganc finetune reads the supernet stage's supernet/final.pt"),
    "export, no best.json": (
        ["export"], None, [], "ganc export reads the supernet stage's supernet/final.pt"),
    "prune, no teacher": (
        ["prune"], None, [], "ganc prune reads the teacher stage's teacher/final.pt"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_refused_command_leaves_no_run(case, data, tmp_path, capsys):
    argv, breaks, more, needle = REFUSED[case]
    if breaks:
        breaks(data)
    if "model.teacher_weights=TEACHER" in more:        # a teacher that fits
        from ganc import nn as gnn
        torch.save(gnn.build("resnet_9blocks", ngf=8).state_dict(), tmp_path / "t.pt")
        more = [a.replace("TEACHER", str(tmp_path / "t.pt")) for a in more]
    store = tmp_path / "store"
    code, out, err = run(capsys, *argv, *tiny(store, data), *more)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err
    assert run(capsys, "runs", store)[1] == "no runs\n"
    assert not store.exists()


def test_a_teacher_checkpoint_of_another_net_is_refused_by_every_command(data, tmp_path,
                                                                         capsys):
    wrong = tmp_path / "resnet_6.pt"
    torch.save({"w": torch.zeros(2, 2)}, wrong)
    for cmd in ("train-supernet", "prune", "compress"):
        code, out, err = run(capsys, cmd, *tiny(tmp_path / "store", data),
                             "--set", f"model.teacher_weights={wrong}")
        assert code == 2 and err.startswith(f"ganc {cmd}: error: model.teacher_weights: "
                                            f"weights {wrong} do not fit"), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_a_store_that_cannot_take_the_run_is_refused_before_start(data, tmp_path, capsys,
                                                                  monkeypatch):
    (tmp_path / "file").write_text("x")
    code, out, err = run(capsys, "compress", *tiny(tmp_path / "file" / "store", data))
    assert err == (f"ganc compress: error: store file://{tmp_path}/file/store: "
                   f"{tmp_path}/file is a file, not a folder\n")
    from ganc.store import retry as store_retry
    monkeypatch.setattr(store_retry, "RETRY_DELAYS", (0.01,))
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                 "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    code, out, err = run(capsys, "compress", *tiny("s3://ganc-test/x", data))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("ganc compress: error: cannot reach s3://ganc-test/x (endpoint "
                          "http://127.0.0.1:9): Could not connect"), err


def test_a_remote_dataset_is_listed_and_sampled(s3_server, s3_url, paired_data):
    import s3fs
    fs = s3fs.S3FileSystem()
    root = s3_url[len("s3://"):]
    fs.put(str(paired_data), root, recursive=True)
    cfg = from_dict({"data": {"root": s3_url, "crop_size": 16}})
    found = check_dataset(cfg.data, full=True)       # a URL: a sample, even under check
    assert not found.problems
    assert f"data train/ (training): {N_TRAIN} images, 2 decoded, sizes 32x16" in found.checked
    fs.rm(f"{root}/val", recursive=True)
    fs.pipe(f"{root}/train/00000.png", b"not an image")
    found = check_dataset(cfg.data)
    problems = [str(p) for p in found.problems]
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"cannot read image {s3_url}/train/00000.png: ")
    assert problems[1] == (f"data.root {s3_url!r}: no images under val/ (evaluation "
                           "(data.eval_split))")


def test_an_s3_store_is_reached_and_probed_without_leaving_a_key(s3_server, s3_url):
    from ganc.store import StoreError, open_store
    st = open_store(s3_url)
    assert st.check_access(write=True) == "reachable, writable"
    assert st.ls() == [] and st.temp_keys() == []
    assert st.check_access(write=False) == "reachable"
    with pytest.raises(StoreError) as e:
        open_store("s3://no-such-bucket-ganc/p").check_access(write=False)
    assert str(e.value) == "store s3://no-such-bucket-ganc/p: bucket 'no-such-bucket-ganc' not found"


def test_what_a_stage_does_not_read_is_not_required(data, tmp_path):
    """Valid input stays valid: the teacher alone reads no eval split (its val PSNR is
    optional); a search scoring on a held-out search split does not either."""
    from ganc.config import load_config
    from ganc.preflight import check_run
    shutil.rmtree(data / "val")
    sets = [a for a in tiny(tmp_path / "store", data)[2:] if a != "--set"]
    cfg = load_config(None, sets, str(tmp_path / "store"))
    assert not check_run(cfg, stage="teacher").problems
    cfg.pipeline.stages = ["teacher", "supernet", "search"]
    cfg.data.search_split = 4
    assert not check_run(cfg).problems
    cfg.pipeline.stages.append("report")
    assert [str(p) for p in check_run(cfg).problems] == [
        f"data.root '{data}': evaluation (data.eval_split) folder val/ not found"]


@pytest.mark.slow
def test_valid_runs_pass_the_checks_and_resume(ray_local, data, tmp_path, capsys):
    """The checks let a valid run through, on a local dataset, stage by stage: the teacher
    trains, the supernet reads it, and a resubmitted teacher job (its run exists now)
    passes the checks again and finds the stage finished."""
    store = tmp_path / "store"
    small = [*tiny(store, data), "--set", "teacher.steps=2", "--set", "distill.steps=2",
             "--set", "teacher.eval_every=-1", "--set", "distill.eval_every=0",
             "--set", "model.ndf=8", "--set", "data.batch_size=2", "--workers", "1"]
    code, out, err = run(capsys, "train-teacher", *small)
    assert code == 0, err
    code, out, err = run(capsys, "train-supernet", *small)
    assert code == 0, err
    code, out, err = run(capsys, "train-teacher", *small)
    assert code == 0 and "teacher already finished" in out, out + err


def test_a_stage_run_with_other_inputs_is_refused_before_ray(data, tmp_path, capsys):
    """``compress`` on a run whose teacher stage recorded other inputs: the one line
    naming the field with its recorded and current values, before Ray starts (the
    autouse fixture fails on any Ray start) and before anything is written."""
    from ganc.config import load_config
    from ganc.context import open_run
    from ganc.resume import INPUTS, stage_inputs

    store = tmp_path / "store"
    argv = tiny(store, data)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    recorded = load_config(None, sets + ["teacher.lr=0.0005"])
    earlier = open_run(recorded, str(store))[1]
    earlier.put_json(INPUTS.format("teacher"), {"fields": stage_inputs(recorded, "teacher")})
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, out, err = run(capsys, "compress", *argv)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "stage teacher ran with another config (teacher.lr: recorded 0.0005, now 0.0002)" \
        in err and "--restart-from teacher" in err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


CONFIGS = Path(__file__).parents[1] / "configs"
PRESETS = sorted(p.name for p in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_presets_discriminator_check_runs(preset):
    """The pre-start discriminator check of every preset (every family's adversary: its
    ``d_input`` and ``D`` at the preset's sizes) passes; MUNIT's adversary had no
    ``d_input``, so `ganc compress --config configs/shoes_munit.yaml` stopped in a
    traceback before its teacher."""
    from ganc.config import load_config
    from ganc.preflight import _adversary
    cfg = load_config(str(CONFIGS / preset), [])
    assert _adversary(cfg).startswith(f"discriminator: {cfg.model.netD} takes ")
