"""``ganc profile``, ``ganc translate`` and ``ganc nets``."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from ..errors import ConfigError
from ..log import Progress
from ..space import PRESETS
from ._args import count, count_or_zero, device as device_arg, resolve_device

GEN_HELP = ("generator: resnet_9blocks, resnet_6blocks, mobile_resnet_9blocks, "
            "super_mobile_resnet_9blocks, sub_mobile_resnet_9blocks, spade, mobile_spade, "
            "super_mobile_spade, sub_mobile_spade, unet_256, unet_128, mobile_unet_256, "
            "mobile_unet_128, super_mobile_unet_256, super_mobile_unet_128, sub_mobile_unet, "
            "munit, mobile_munit, super_munit, super_mobile_munit, sub_mobile_munit")


def _hw(text: str, flag: str = "--size") -> tuple[int, int]:
    """'256' -> (256, 256); '256x512' -> (256, 512) (height x width)."""
    try:
        parts = [int(v) for v in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ConfigError(f"{flag} {text!r} must be SIZE or HEIGHTxWIDTH, e.g. 256 or 256x512")
    return parts[0], parts[1]


def _arch_args(p, weights_optional=False):
    p.add_argument("--netG", help=GEN_HELP + (" (default: from model.json beside --weights)"
                                              if weights_optional else ""))
    p.add_argument("--config", help="channel config for sub/super nets, e.g. "
                                    "16_16_32_16_32_32_16_16 (8 numbers, or the legacy 6 "
                                    "for ResNets; U-Nets: one per level, 8 or 7; 10 for "
                                    "MUNIT)")
    p.add_argument("--space", help="validate --config against a search space "
                                   "(channels-64-cycleGAN, channels-64-pix2pix, "
                                   "spade-channels-48, spade-channels-64, "
                                   "unet256-channels-64, unet128-channels-64, "
                                   "munit-channels-64)")
    p.add_argument("--ngf", type=count, help="base width of resnet/mobile/super nets (default 64)")
    p.add_argument("--norm", choices=["instance", "batch", "none"],
                   help="normalization (default instance; SPADE: batch, its modulations' "
                        "param-free norm; U-Net: batch, as pix2pix)")


def register(sub):
    p = sub.add_parser("profile", help="MACs, parameters and latency of a generator",
                       description="Print MACs (in the GAN Compression tables' convention by "
                                   "default), parameters and optionally CPU/CUDA latency.")
    _arch_args(p)
    p.add_argument("--size", default="256",
                   help="input size: SIDE or HEIGHTxWIDTH (default 256; SPADE needs multiples "
                        "of 32)")
    p.add_argument("--input-nc", type=count, metavar="N",
                   help="input channels (default 3; SPADE: 12, CamVid's one-hot label map)")
    p.add_argument("--upsampling", choices=["normal", "more"],
                   help="SPADE num_upsampling_layers (default normal; the GauGAN paper's "
                        "281G teacher is 'more')")
    p.add_argument("--convention", choices=["torchprofile", "flopcounter"],
                   default="torchprofile",
                   help="torchprofile: the published tables' MACs (transposed convs per output "
                        "element, norms counted); flopcounter: torch FlopCounterMode / 2")
    p.add_argument("--latency", action="store_true", help="also measure latency (batch 1)")
    p.add_argument("--repeats", type=count, default=10, help="latency: timed runs (median)")
    p.add_argument("--device", type=device_arg, default="auto",
                   help="latency device: auto, cpu, cuda or cuda:N")
    p.add_argument("--runtime", default="eager",
                   help="latency runtime: eager (PyTorch), onnxruntime (the model exported "
                        "to ONNX, run by onnxruntime on the CPU) or inductor (torch.compile "
                        "with weight freezing on the CPU; compiles first, needs a C++ "
                        "compiler); implies --latency for onnxruntime and inductor")
    p.add_argument("--threads", type=count_or_zero, default=0,
                   help="latency: intra-op threads (default 0: the runtime's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("translate", help="run a generator over a folder of images",
                       description="Translate every image of --input with a generator and "
                                   "write PNGs with the same base names to --output. Nothing "
                                   "is written unless every image translates.")
    _arch_args(p, weights_optional=True)
    p.add_argument("--weights", help="generator state dict (.pth/.pt), or an ONNX file "
                                     "(.onnx, run by onnxruntime)")
    p.add_argument("--onnx", help="an ONNX generator (ganc export's model.onnx) to run with "
                                  "onnxruntime instead of --weights")
    p.add_argument("--threads", type=count_or_zero, default=0,
                   help="ONNX: onnxruntime intra-op threads (default 0: its default)")
    p.add_argument("--input", required=True, help="folder of input images")
    p.add_argument("--output", required=True, help="folder for the PNG outputs")
    p.add_argument("--size", type=count_or_zero, default=256,
                   help="resize inputs to SIZE x SIZE (default 256; 0 keeps the size)")
    p.add_argument("--batch-size", type=count, default=4, help="images per forward pass")
    p.add_argument("--device", type=device_arg, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--style-seed", type=int, metavar="SEED",
                   help="MUNIT generators: translate every image with the one style code "
                        "drawn from SEED (default 0); other generators take no style code")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("nets", help="list registered networks and search spaces")
    p.set_defaults(func=cmd_nets)


def cmd_profile(args):
    from ..modelio import as_runnable, build_generator, resolve_spec  # deferred: torch
    from ..profile import profile  # deferred: torch
    # deferred: torch
    from ..runtime import (PROFILE_RUNTIMES, check_runtime, check_threads, runner,
                           time_alternating)

    check_runtime(args.runtime, allowed=PROFILE_RUNTIMES)
    check_threads(args.threads)
    h, w = _hw(args.size)
    if min(h, w) < 8 or h % 4 or w % 4:
        raise ConfigError(f"--size must be positive multiples of 4, got {args.size}")
    if args.runtime != "eager" and args.device not in ("auto", "cpu"):
        raise ConfigError(f"--runtime {args.runtime} runs on the CPU; --device {args.device} "
                          "is not available to it")
    device = resolve_device("cpu" if args.runtime != "eager" else args.device)
    spec = resolve_spec(args.netG, args.config, args.ngf, args.norm, space=args.space)
    if args.input_nc is not None:
        spec.input_nc = args.input_nc
    if args.upsampling:
        from ..families import family_of        # deferred: torch
        if "upsampling" not in family_of(spec.netG).options:
            raise ConfigError(f"--upsampling applies to SPADE generators, not {spec.netG}")
        spec.arch["upsampling"] = args.upsampling
    model = as_runnable(build_generator(spec), spec).to(device)
    res = profile(model, (h, w), spec.input_nc, args.convention)
    res["netG"] = spec.netG
    given = _given_extra_macs(model, res, args.convention)
    if spec.config:
        res["config"] = spec.config
    latency = args.latency or args.runtime != "eager" or args.threads
    if latency:
        import torch  # deferred: torch
        from ..runtime import default_threads  # deferred: torch
        shape = tuple(res["input_size"])
        if device.type == "cuda":
            from ..profile import measure_latency  # deferred: torch
            res["latency"] = {**measure_latency(model, shape, repeats=args.repeats),
                              "runtime": "eager"}
        else:
            run = runner(model, args.runtime, args.threads, spec.input_nc, (h, w))
            x = torch.randn(*shape)
            t = time_alternating({"m": lambda: run(x)}, rounds=args.repeats)["m"]
            res["latency"] = {**t, "device": "cpu", "runtime": args.runtime,
                              "threads": args.threads or default_threads()}
    if args.json:
        print(json.dumps(res))
        return 0
    _print_profile(f"{spec.label()} at {h}x{w}", res, args.convention, given)
    return 0


def _print_profile(title: str, res: dict, convention: str, given: str) -> None:
    print(title)
    print(f"  MACs:   {res['macs'] / 1e9:.3f} G  ({res['macs']:,}; {convention} convention"
          + ("; style code encoded from the input, as the reference counts" if given else "")
          + ")")
    if given:
        print(f"  MACs with a given {given} (translation, no style encoder): "
              f"{res['macs_given_extra'] / 1e9:.3f} G  ({res['macs_given_extra']:,})")
    print(f"  params: {res['params'] / 1e6:.3f} M  ({res['params']:,})")
    if "latency" in res:
        lat = res["latency"]
        print(f"  latency: {lat['median_ms']:.2f} ms median of {lat['repeats']} "
              f"({lat['runtime']}, {lat['device']}, {lat['threads']} threads)")


def _given_extra_macs(model, res: dict, convention: str) -> str:
    """For a generator that takes inputs beside the image (a MUNIT style code): its MACs
    when they are given (``res['macs_given_extra']``); returns their names ('' if none)."""
    from ..extras import draw_for  # deferred: torch
    from ..profile import count_macs  # deferred: torch
    p = next(model.parameters())
    extra = draw_for(model, 1, 0, device=p.device)
    if not extra:
        return ""
    res["macs_given_extra"] = count_macs(model, tuple(res["input_size"]), convention,
                                         **extra)
    return " and ".join(f"{k} code" for k in extra)


def _translator(args):
    """(model, label, device) from --onnx / an .onnx --weights (onnxruntime, CPU), else
    the weights."""
    from ..modelio import load_generator, resolve_spec  # deferred: torch
    from ..onnxrun import load_onnx  # deferred: torch
    from ..runtime import check_threads  # deferred: torch
    check_threads(args.threads)
    if args.onnx and args.weights:
        raise ConfigError("give --weights or --onnx, not both")
    if not args.onnx and not args.weights:
        raise ConfigError("--weights (a state dict or an .onnx file) or --onnx is required")
    path = args.onnx or (args.weights if args.weights.lower().endswith(".onnx") else None)
    if path:
        if args.device not in ("auto", "cpu"):
            raise ConfigError(f"ONNX models run on the CPU with onnxruntime; --device "
                              f"{args.device} is not available to them")
        return (load_onnx(path, threads=args.threads),
                f"{os.path.basename(path)} (onnxruntime)", resolve_device("cpu"))
    device = resolve_device(args.device)
    spec = resolve_spec(args.netG, args.config, args.ngf, args.norm, args.weights, args.space)
    return load_generator(args.weights, spec).to(device), spec.label(), device


def _check_output(args) -> str:
    """The absolute --output, refused in one line before anything is read when it is
    --input, lies inside it or holds it (the PNGs could overwrite the source images), or
    is a file."""
    out = os.path.abspath(args.output)
    src, dst = os.path.realpath(args.input), os.path.realpath(out)
    if os.path.commonpath([src, dst]) in (src, dst):
        where = ("is" if src == dst else "is inside" if os.path.commonpath([src, dst]) == src
                 else "holds")
        raise ConfigError(f"--output {args.output} {where} --input {args.input}: the PNGs "
                          "could overwrite the source images; choose a folder outside it")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise ConfigError(f"--output {args.output} is a file, not a folder")
    return out


def _load_batch(paths, size):
    from ..data.images import load_rgb, to_tensor  # deferred: torch
    batch = []
    for p in paths:
        im = load_rgb(p)
        if size:
            im = im.resize((size, size), 3)  # bicubic, as at test time
        elif im.size[0] % 4 or im.size[1] % 4:
            raise ConfigError(f"image {p} is {im.size[0]}x{im.size[1]}; sides must be "
                              "multiples of 4 (or pass --size)")
        batch.append(to_tensor(im))
    return batch


def cmd_translate(args):
    import torch  # deferred: torch

    # deferred: torch
    from ..data.images import check_images, list_images, save_png, stem, to_uint8
    from ..extras import check_seed, draw_for, same_for_all  # deferred: torch

    if args.size and (args.size < 8 or args.size % 4):
        raise ConfigError(f"--size must be a positive multiple of 4 (or 0), got {args.size}")
    out = _check_output(args)
    model, label, device = _translator(args)
    check_seed(args.style_seed, model)
    style = draw_for(model, 1, args.style_seed or 0, device=device)   # {} without one
    paths = list_images(args.input, "--input folder")
    stems = [stem(p) for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise ConfigError(f"--input {args.input} has several images named {sorted(dup)[0]}.*; "
                          "output names would collide")
    check_images(paths)

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ganc-translate-", dir=parent)
    progress = Progress(len(paths), "translate")
    written = []
    try:
        for i in range(0, len(paths), args.batch_size):
            batch = _load_batch(paths[i:i + args.batch_size], args.size)
            sizes = {tuple(t.shape) for t in batch}
            with torch.inference_mode():
                outs = ([model(torch.stack(batch).to(device), **same_for_all(style, len(batch)))]
                        if len(sizes) == 1 else
                        [model(t[None].to(device), **style) for t in batch])
            for j, o in enumerate(torch.cat(outs)):
                save_png(to_uint8(o), os.path.join(tmp, stems[i + j] + ".png"))
            progress.update(i + len(batch))
        names = sorted(os.listdir(tmp))
        if len(names) != len(paths):                        # a bug, never a user's error
            raise RuntimeError(f"translated {len(names)} of {len(paths)} images")
        os.makedirs(out, exist_ok=True)
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
            written.append(name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seed = f" (style seed {args.style_seed or 0})" if style else ""
    print(f"wrote {len(written)} images to {out} with {label}{seed}")
    return 0


def cmd_nets(args):
    from .. import nn as gnn  # deferred: torch
    print("generators:     " + ", ".join(gnn.GENERATORS))
    print("discriminators: " + ", ".join(gnn.DISCRIMINATORS))
    for name, sp in PRESETS.items():
        if len(set(sp.choices)) == 1:
            widths = f"widths {list(sp.choices[0])} per position"
        else:
            widths = "widths " + ", ".join(f"{p} {list(c)}" for p, c in
                                           zip(sp.positions, sp.choices))
        print(f"search space {name} ({sp.family}): {widths}, {sp.size:,} configs")
    return 0
