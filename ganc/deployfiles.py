"""The deployed files of a generator with their part of the model card: ``model.onnx``
and ``model.pt2`` (:mod:`ganc.deploy`), each checked against the eager model, and the
batch-1 latency per runtime (:mod:`ganc.runtime`). Written by the export stage and by the
prune stage; below both (and above deploy and runtime: runtime imports deploy)."""
from __future__ import annotations

from typing import Optional

from .deploy import deploy_artifacts
from .runtime import RUNTIMES, latency_by_runtime, machine_info

LATENCY_THREADS = (1, 0)         # thread counts of the model card's latency (0: default)


def write_deploy_files(run, prefix: str, net, input_nc: int, size: int,
                       latency_repeats: int = 10, files: Optional[dict] = None) -> dict:
    """``<prefix>/model.onnx`` and ``<prefix>/model.pt2`` of a generator, each checked
    against the eager model, and its batch-1 latency on every runtime at 1 thread and
    the default thread count, with the machine; returns the model card's part. With
    ``files`` the bytes go there (for :meth:`Store.commit_unit`) instead of the store."""
    art = deploy_artifacts(net, input_nc, size)
    if files is not None:
        files.update({"model.onnx": art["onnx"], "model.pt2": art["pt2"]})
    else:
        run.write_bytes(f"{prefix}/model.onnx", art["onnx"])
        run.write_bytes(f"{prefix}/model.pt2", art["pt2"])
    latency = latency_by_runtime(net, input_nc, size, RUNTIMES, LATENCY_THREADS,
                                 rounds=latency_repeats, onnx=art["onnx"])
    return {**art["card"], "latency_ms": latency,
            "latency_setup": {"batch": 1, "input": [1, input_nc, size, size],
                              "statistic": f"median of {latency_repeats} alternating runs"},
            "machine": machine_info()}


__all__ = ["LATENCY_THREADS", "write_deploy_files"]
