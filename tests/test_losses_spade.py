"""SPADE training terms: multiscale discriminator, hinge over scales, feature matching and
the Inception perceptual loss."""
import pytest
import torch

from ganc import nn as gnn
from ganc.errors import ConfigError, GancError
from ganc.losses import GANLoss
from ganc.losses_spade import (InceptionPerceptualLoss, discriminator_input,
                               feature_matching_loss, multiscale_gan_loss)


def test_multiscale_discriminator_shapes_and_keys():
    d = gnn.build("multi_scale", input_nc=15, ndf=8)
    x = torch.randn(2, 15, 64, 96)
    out = d(x)
    assert len(out) == 2 and [len(o) for o in out] == [5, 5]
    assert [f.shape[1] for f in out[0]] == [8, 16, 32, 64, 1]
    assert out[0][-1].shape == (2, 1, 11, 15) and out[1][-1].shape == (2, 1, 7, 9)
    sd = d.state_dict()
    assert "discriminator_0.model0.0.weight_orig" in sd          # spectral norm
    assert "discriminator_1.model4.0.bias" in sd and "discriminator_0.model2.0.bias" not in sd
    plain = gnn.build("multi_scale", input_nc=15, ndf=8, spectral=False).state_dict()
    assert "discriminator_0.model0.0.weight" in plain and len(plain) < len(sd)
    with pytest.raises(ConfigError):
        gnn.MultiscaleDiscriminator(15, num_D=0)


def test_hinge_over_scales_and_feature_matching():
    gan = GANLoss("hinge")
    outs = [[torch.zeros(1, 4, 2, 2), torch.full((1, 1, 3, 3), 2.0)],
            [torch.zeros(1, 4, 1, 1), torch.full((1, 1, 2, 2), -0.5)]]
    # D on real: relu(1 - 2) = 0 and relu(1 + 0.5) = 1.5 -> mean over scales 0.75
    assert multiscale_gan_loss(gan, outs, True).item() == pytest.approx(0.75)
    # G: -mean(pred) per scale: (-2 + 0.5) / 2
    assert multiscale_gan_loss(gan, outs, True, False).item() == pytest.approx(-0.75)
    d = gnn.build("multi_scale", input_nc=15, ndf=8)
    labels = torch.zeros(1, 12, 64, 64)
    real = discriminator_input(labels, torch.rand(1, 3, 64, 64) * 2 - 1)
    fake = discriminator_input(labels, torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_()
    d.eval()
    r = d(real)
    assert feature_matching_loss(r, r).item() == 0
    fm = feature_matching_loss(d(fake), r)
    fm.backward()
    assert fm.item() > 0 and fake.grad.abs().sum() > 0
    with pytest.raises(ConfigError):
        feature_matching_loss(r[:1], r)


@pytest.fixture(scope="module")
def perceptual():
    try:
        return InceptionPerceptualLoss.load()
    except GancError as e:                       # no cached weights and no package index
        pytest.skip(f"no Inception weights available: {e}")


def test_inception_perceptual_loss(perceptual):
    g = torch.Generator().manual_seed(0)
    real = torch.rand(2, 3, 64, 96, generator=g) * 2 - 1
    fake = (torch.rand(2, 3, 64, 96, generator=g) * 2 - 1).requires_grad_()
    assert perceptual(real, real).item() == 0
    loss = perceptual(fake, real)
    loss.backward()
    assert loss.item() > 0 and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in perceptual.parameters())
    perceptual.train()
    assert not perceptual.training                # its batch norms never leave eval mode
    closer = perceptual(real + 0.05 * (fake.detach() - real), real)
    assert closer < loss                          # nearer images, smaller loss
    with pytest.raises(ConfigError, match="at least 64"):
        perceptual(real[..., :32, :], real[..., :32, :])
