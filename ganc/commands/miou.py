"""``ganc miou``: ESPNet-CamVid mIoU of a folder of photos against their label maps."""
from __future__ import annotations

import json

from ..errors import ConfigError
from ._args import count, device, resolve_device


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        h = w = 0
    if min(h, w) < 1:
        raise ConfigError(f"--input-size {text!r} must be HEIGHTxWIDTH of positive sides, "
                          "e.g. 352x480")
    return h, w


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "miou", help="ESPNet-CamVid mIoU of images against their label maps",
        description="Segment every image of --images with ESPNet (p=2, q=8, CamVid) and score "
                    "the result against the label map of the same name in --labels (mode L, "
                    "classes 0-10, 11 = void): one confusion matrix over the folder, mIoU over "
                    "the 11 classes and pixel accuracy, in percent. This is ganc's "
                    "'ESPNet-CamVid mIoU'; the GauGAN paper uses DRN-D-105 on Cityscapes.")
    p.add_argument("--images", required=True, metavar="DIR", help="photos (real or generated)")
    p.add_argument("--labels", required=True, metavar="DIR",
                   help="label maps named like the images (any image extension)")
    p.add_argument("--weights", default="", metavar="PATH",
                   help="ESPNet weights espnet_p_2_q_8_camvid.pth (default: $GANC_ESPNET, "
                        "GANC_CACHE/espnet-camvid/, or ../shared/models/espnet-camvid/)")
    p.add_argument("--input-size", default="352x480", metavar="HxW",
                   help="segmenter input size (the protocol's 352x480)")
    p.add_argument("--batch-size", type=count, default=8, metavar="N",
                   help="images per segmenter batch")
    p.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: miou, pixel_acc, n, protocol, iou (per class)")
    p.set_defaults(func=run_miou)


def run_miou(args) -> int:
    from ..data.camvid import CLASSES  # deferred: torch
    from ..metrics.miou import score_folders  # deferred: torch, torch_fidelity
    size = _size(args.input_size)
    device = str(resolve_device(args.device))
    out = score_folders(args.images, args.labels, batch_size=args.batch_size,
                        weights=args.weights or None, input_size=size, device=device)
    if args.json:
        print(json.dumps({k: out[k] for k in ("miou", "pixel_acc", "n", "protocol", "iou")},
                         sort_keys=True))
        return 0
    print(f"ESPNet-CamVid mIoU {out['miou']:.2f}  pixel accuracy {out['pixel_acc']:.2f}  "
          f"(n {out['n']}, segmenter input {size[0]}x{size[1]})")
    print("  per class: " + ", ".join(
        f"{c} {'-' if v is None else f'{v:.1f}'}" for c, v in zip(CLASSES, out["iou"])))
    return 0
