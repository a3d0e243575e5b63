"""Released ResNet teachers load strictly in both layouts (GUIDE §3, issue 12):
pytorch-CycleGAN-and-pix2pix (Dropout slot in each residual block only when trained with
dropout) and GAN Compression "full" (the slot always there). The checkpoints are written
by modules built in the other project's layout (independently of ganc's remapping), with
a ganc model's random weights copied in parameter order."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ganc import nn as gnn
from ganc.errors import WeightsError
from ganc.weights import load_weights

NGF, SIZE = 4, 32


class _Block(nn.Module):
    """A residual block as the other projects build it; ``slot`` adds the Dropout."""

    def __init__(self, dim, norm_layer, bias, slot):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim),
                  nn.ReLU(True)]
        if slot:
            layers.append(nn.Dropout(0.0))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)


def foreign_resnet(norm: str, slot: bool, n_blocks: int = 9) -> nn.Module:
    """resnet_<n>blocks in the released layout (``model.<i>``), blocks with or without slot."""
    if norm == "instance":
        norm_layer, bias = functools.partial(nn.InstanceNorm2d, affine=False), True
    else:
        norm_layer, bias = nn.BatchNorm2d, False
    g = NGF
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, g, 7, bias=bias), norm_layer(g), nn.ReLU(True),
              nn.Conv2d(g, 2 * g, 3, 2, 1, bias=bias), norm_layer(2 * g), nn.ReLU(True),
              nn.Conv2d(2 * g, 4 * g, 3, 2, 1, bias=bias), norm_layer(4 * g), nn.ReLU(True)]
    layers += [_Block(4 * g, norm_layer, bias, slot) for _ in range(n_blocks)]
    layers += [nn.ConvTranspose2d(4 * g, 2 * g, 3, 2, 1, 1, bias=bias), norm_layer(2 * g),
               nn.ReLU(True),
               nn.ConvTranspose2d(2 * g, g, 3, 2, 1, 1, bias=bias), norm_layer(g), nn.ReLU(True),
               nn.ReflectionPad2d(3), nn.Conv2d(g, 3, 7), nn.Tanh()]
    net = nn.Module()
    net.model = nn.Sequential(*layers)
    return net


def write_foreign(path, source: nn.Module, norm: str, slot: bool) -> dict:
    """Save ``source``'s weights (and batch-norm statistics) in the foreign layout."""
    foreign = foreign_resnet(norm, slot)
    src, dst = source.state_dict(), foreign.state_dict()
    assert [t.shape for t in src.values()] == [t.shape for t in dst.values()]
    state = {k: v.clone() for k, v in zip(dst, src.values())}
    torch.save(state, path)
    return state


def randomised(net: nn.Module) -> nn.Module:
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.2 + (0.9 if t.dim() == 1 else -0.1))
    return net.eval()


def outputs_equal(a: nn.Module, b: nn.Module) -> bool:
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


# (layout name, has slot, dropout of the ganc model that loads it)
LAYOUTS = [
    ("pytorch-CycleGAN-and-pix2pix", False, 0.0),
    ("pytorch-CycleGAN-and-pix2pix --use_dropout", True, 0.0),
    ("GAN Compression full", True, 0.0),
    ("pytorch-CycleGAN-and-pix2pix into a ganc model with dropout", False, 0.5),
    ("GAN Compression full into a ganc model with dropout", True, 0.5),
]


@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("layout,slot,dropout", LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_each_released_layout_loads_strictly_with_equal_outputs(tmp_path, norm, layout, slot,
                                                                 dropout):
    torch.manual_seed(0)
    source = randomised(gnn.build("resnet_9blocks", ngf=NGF, norm=norm, dropout=dropout))
    state = write_foreign(tmp_path / "latest_net_G.pth", source, norm, slot)
    second_conv = {k for k in state if k.startswith("model.10.conv_block.") and
                   k.endswith("weight") and state[k].dim() == 4}
    assert second_conv == {"model.10.conv_block.1.weight",
                           f"model.10.conv_block.{6 if slot else 5}.weight"}
    target = gnn.build("resnet_9blocks", ngf=NGF, norm=norm, dropout=dropout)
    load_weights(target, tmp_path / "latest_net_G.pth")        # strict keys and shapes
    assert outputs_equal(source, target)


def test_instance_norm_running_stats_of_old_checkpoints_are_dropped(tmp_path):
    torch.manual_seed(0)
    source = randomised(gnn.build("resnet_9blocks", ngf=NGF))
    state = write_foreign(tmp_path / "g.pth", source, "instance", slot=True)
    for key in ("model.2", "model.10.conv_block.2", "model.10.conv_block.7"):
        state[f"{key}.running_mean"] = torch.zeros(4 * NGF if "10" in key else NGF)
        state[f"{key}.running_var"] = torch.ones(4 * NGF if "10" in key else NGF)
    torch.save(state, tmp_path / "g.pth")
    target = gnn.build("resnet_9blocks", ngf=NGF)
    load_weights(target, tmp_path / "g.pth")
    assert outputs_equal(source, target)


def test_a_layout_that_fits_neither_still_fails_in_one_line(tmp_path):
    source = gnn.build("resnet_9blocks", ngf=NGF)
    state = dict(source.state_dict())
    state["model.10.conv_block.8.weight"] = state.pop("model.10.conv_block.5.weight")
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(WeightsError) as e:
        load_weights(gnn.build("resnet_9blocks", ngf=NGF), tmp_path / "odd.pth")
    assert "\n" not in str(e.value) and "model.10.conv_block" in str(e.value)


def test_teachers_load_through_the_same_remapping(tmp_path, capsys):
    """The supernet's teacher loader and ``ganc translate`` take a GAN Compression full
    teacher as they take a pytorch-CycleGAN-and-pix2pix one."""
    from ganc.cli import main
    from ganc.train.supernet import load_teacher
    torch.manual_seed(0)
    source = randomised(gnn.build("resnet_9blocks", ngf=NGF))
    write_foreign(tmp_path / "full.pth", source, "instance", slot=True)
    ref = {"netG": "resnet_9blocks", "ngf": NGF, "norm": "instance", "dropout": 0.0,
           "source": str(tmp_path / "full.pth")}
    assert outputs_equal(source, load_teacher(ref))
    (tmp_path / "in").mkdir()
    im = np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(im).save(tmp_path / "in" / "x.png")
    code = main(["translate", "--netG", "resnet_9blocks", "--ngf", str(NGF), "--weights",
                 str(tmp_path / "full.pth"), "--input", str(tmp_path / "in"),
                 "--output", str(tmp_path / "out"), "--size", str(SIZE), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    with torch.no_grad():
        x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 127.5 - 1
        want = ((source(x)[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(tmp_path / "out" / "x.png"))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
