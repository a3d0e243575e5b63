"""The Ray FID actor pool: parallel scoring, weights shipped once, an actor killed
mid-score, real statistics cached in the store. Real Ray, real Inception weights."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from ganc import nn as gnn
from ganc.errors import ConfigError, GancError
from ganc.space import ChannelConfig
from ganc.store import open_store

# make test runs this module in the cluster tier's session (tests/run_tiers.sh)
pytestmark = pytest.mark.beside


N_IMAGES = 8
CONFIGS = ["16_16_16_16_16_16_16_16", "8_8_16_8_16_16_8_8", "16_8_8_8_8_8_16_8"]


def _images(folder, n, size, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        a = np.stack([127 + 120 * np.sin(rng.uniform(0.1, 0.5) * xx + rng.uniform(0.1, 0.5) * yy
                                          + rng.uniform(0, 6)) for _ in range(3)], -1)
        Image.fromarray(a.astype(np.uint8)).save(os.path.join(folder, f"{i:03d}.png"))
    return str(folder)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ray_local):
    from ganc.metrics import load_extractor
    from ganc.metrics.pool import EvalSplit
    try:
        load_extractor("auto")     # make sure the weights are cached before actors start
    except GancError as e:
        pytest.skip(f"no Inception weights available: {e}")
    root = tmp_path_factory.mktemp("pool")
    split = EvalSplit.from_folders(_images(root / "inputs", N_IMAGES, 32, 1),
                                   _images(root / "real", N_IMAGES, 32, 2), size=32,
                                   label="synthetic/val/B")
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=16)
    store = open_store(root / "store")
    return split, sup, store


@pytest.fixture(scope="module")
def pool(setup):
    from ganc.config import FidConfig
    from ganc.metrics.pool import FidPool
    split, sup, store = setup
    p = FidPool(split, num_actors=2, store=store,
                fid=FidConfig(kid=True, kid_subset_size=N_IMAGES, batch_size=8))
    p.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                     ngf=16)
    p.register_model("plain", gnn.extract_subnet(sup, ChannelConfig.parse(CONFIGS[1])))
    yield p
    p.close()


def _specs():
    from ganc.metrics.pool import SubnetSpec
    return [SubnetSpec("super", c, tag=f"c{i}") for i, c in enumerate(CONFIGS)] + \
        [SubnetSpec("plain", None, tag="plain")]


# Runs before the tests that use the module's shared `pool` (2 actors holding the test
# Ray's CPUs until the module ends): this test builds its own pool.
# A tiny config scores in about a second here; the timeout counts from when the actor is
# up (Inception loaded), so 8 s is generous, and the hang costs 8 s per queued task.
HANG_TIMEOUT_S = 8


@pytest.mark.slow
def test_a_hanging_actor_is_replaced_and_its_config_rescored(setup, tmp_path):
    """The test hook makes the first scoring of one config sleep far past the timeout."""
    from ganc.config import FidConfig
    from ganc.metrics.pool import FidPool, SubnetSpec
    split, sup, store = setup
    hang = {"config": CONFIGS[1], "seconds": 600, "marker": str(tmp_path / "hung")}
    with FidPool(split, num_actors=1, store=store, timeout_s=HANG_TIMEOUT_S, test_hang=hang,
                 fid=FidConfig(kid=False, batch_size=8)) as p:
        p.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                         ngf=16)
        got = p.score([SubnetSpec("super", c) for c in CONFIGS])
        stats = p.stats()
    assert os.path.exists(hang["marker"]), "the hook never fired"
    assert [s.spec.config for s in got] == CONFIGS and all(s.status == "ok" for s in got)
    assert got[1].attempts == 2 and np.isfinite(got[1].fid)
    assert stats["timeouts"] == 1 and stats["restarts"] == 1 and stats["failed"] == 0


@pytest.mark.slow
def test_pool_scores_in_parallel_and_survives_a_killed_actor(pool, setup, ray_local):
    import ray
    split, sup, store = setup
    info = pool.info()
    assert len({i["pid"] for i in info}) == 2
    assert all(i["device"] == "cpu" and i["threads"] == 1 for i in info)
    assert pool.num_gpus == 0 and pool.num_cpus == 1

    # Real statistics: computed once by an actor and cached in the store.
    assert [k for k in store.ls() if k.startswith("fid-stats/synthetic-val-B-")]
    assert pool.real.n == N_IMAGES

    specs = _specs()
    first = pool.score(specs)
    assert [s.index for s in first] == [0, 1, 2, 3]
    assert [s.spec for s in first] == specs
    assert len({s.actor for s in first}) == 2                 # both actors worked
    assert all(s.attempts == 1 and s.n_fake == N_IMAGES for s in first)
    assert all(np.isfinite(s.fid) and s.fid > 0 and s.kid_mean is not None for s in first)
    # The plain sub-generator equals the supernet run at its config.
    assert first[3].fid == pytest.approx(first[1].fid, rel=1e-4)
    assert len({round(s.fid, 6) for s in first[:3]}) == 3

    # An actor killed while it scores: the call still returns one Score per spec.
    client = pool.client()
    before = pool.stats()
    ref = client.submit(specs)
    dispatcher = client.dispatcher
    deadline = time.time() + 120
    while True:
        busy = ray.get(dispatcher.names.remote(busy=True))
        if busy:
            break
        assert time.time() < deadline, "no actor was ever busy"
        time.sleep(0.01)
    names = ray.get(dispatcher.names.remote())
    victim = ray.get(dispatcher.actors.remote())[names.index(busy[0])]
    ray.kill(victim, no_restart=True)
    second = ray.get(ref)
    after = pool.stats()
    assert after["restarts"] == before["restarts"] + 1
    assert after["retries"] >= before["retries"] + 1 and after["failed"] == before["failed"]
    assert [s.index for s in second] == [0, 1, 2, 3]           # each exactly once
    assert any(s.attempts == 2 for s in second)
    assert all(s.status == "ok" for s in second)
    for a, b in zip(first, second):
        assert b.fid == pytest.approx(a.fid, rel=1e-6), (a, b)
        assert b.kid_mean == pytest.approx(a.kid_mean, rel=1e-6, abs=1e-9)
    assert busy[0] not in ray.get(dispatcher.names.remote())
    assert len(pool.info()) == 2                               # replacement is alive
    # KID only when asked for
    no_kid = pool.score(specs[:1], kid=False)[0]
    assert no_kid.kid_mean is None and no_kid.fid == pytest.approx(first[0].fid, rel=1e-6)


def test_a_config_whose_scoring_fails_is_recorded_with_its_reason(pool):
    from ganc.metrics.pool import SubnetSpec
    got = pool.score([SubnetSpec("super", "64_16_16_16_16_16_16_16"),
                      SubnetSpec("super", CONFIGS[0])], failures="record")
    assert got[0].status == "failed" and "exceeds the supernet's ngf 16" in got[0].error
    assert "\n" not in got[0].error and got[1].status == "ok"


def test_in_process_pool_matches_and_hits_the_cache(pool, setup):
    from ganc.config import FidConfig
    from ganc.metrics.pool import LocalPool, SubnetSpec
    split, sup, store = setup
    local = LocalPool(split, store=store,
                      fid=FidConfig(kid=True, kid_subset_size=N_IMAGES, batch_size=8))
    assert local.real.cached                                  # written by the pool's actor
    np.testing.assert_allclose(local.real.mu, pool.real.mu)
    sup.train()                                                # as a training loop has it
    local.register_model("super", sup)
    got = local.score([SubnetSpec("super", CONFIGS[0])])[0]
    # scoring in-process leaves the caller's model and grad mode alone
    assert sup.training and torch.is_grad_enabled()
    assert next(sup.parameters()).device.type == "cpu"
    ref = pool.score([SubnetSpec("super", CONFIGS[0])])[0]
    assert got.fid == pytest.approx(ref.fid, rel=1e-3)
    assert got.actor == "local"


def test_pool_errors_are_one_line_and_models_can_be_replaced(pool, setup):
    from ganc.metrics.pool import SubnetSpec
    with pytest.raises(ConfigError, match="no model registered as 'nope'"):
        pool.score([SubnetSpec("nope", CONFIGS[0])])
    with pytest.raises(GancError) as e:
        pool.score([SubnetSpec("super", "64_16_16_16_16_16_16_16")])
    assert "exceeds the supernet's ngf 16" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(GancError, match="not a supernet"):
        pool.score([SubnetSpec("plain", CONFIGS[0])])
    # the pool still works after task errors; a re-registered name gets its new model
    pool.register_model("plain", gnn.extract_subnet(setup[1], ChannelConfig.parse(CONFIGS[0])))
    plain, sup0 = pool.score([SubnetSpec("plain"), SubnetSpec("super", CONFIGS[0])])
    assert plain.fid == pytest.approx(sup0.fid, rel=1e-4)


@pytest.mark.slow
def test_a_restarted_dispatcher_learns_the_real_statistics(pool, setup):
    """The dispatcher's process dies after the real statistics were computed (they came
    from an actor, not from its constructor): Ray restarts it from its first arguments, and
    the next call still scores (each call carries the statistics)."""
    import ray
    from ganc.metrics.pool import SubnetSpec
    ref = pool.score([SubnetSpec("super", CONFIGS[2])])[0]
    old = {i["pid"] for i in pool.info()}
    ray.kill(pool.dispatcher, no_restart=False)
    deadline = time.time() + 180
    while True:             # the restarted dispatcher answers, with actors of its own
        try:
            pids = {i["pid"] for i in ray.get(
                pool.dispatcher.call_all.remote("info"), timeout=60)}
            if pids and not pids & old:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        assert time.time() < deadline, "the dispatcher never came back"
        time.sleep(0.2)
    got = pool.score([SubnetSpec("super", CONFIGS[2])], failures="record")[0]
    assert got.status == "ok", got.error
    assert got.fid == pytest.approx(ref.fid, rel=1e-6)
