"""Codecs: objects to bytes and back (JSON, .npz, Parquet, torch), each error in one line
naming the object's URL. Checkpoints always load with ``torch.load(..., weights_only=True)``.

numpy, pyarrow and torch are imported inside the functions that need them (deferred: the
store is imported by light commands that never touch them).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import one_line
from .keys import StoreError


def json_default(o):
    """JSON of numpy scalars and arrays, paths and objects with ``to_dict``."""
    try:
        import numpy as np  # deferred: numpy
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def json_bytes(obj: Any) -> bytes:
    """The store's JSON text of ``obj``: indented, sorted keys, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode()


def encode_json(obj: Any, url: str) -> bytes:
    """:func:`json_bytes`, one line naming ``url`` when ``obj`` is not JSON-able."""
    try:
        return json_bytes(obj)
    except (TypeError, ValueError) as e:
        raise StoreError(f"cannot write {url} as JSON: {one_line(e, limit=200)}") from None


def decode_json(data: bytes, url: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StoreError(f"{url} is not valid JSON: {one_line(e, limit=200)}") from None


def encode_npz(arrays: Optional[Mapping[str, Any]], url: str) -> bytes:
    import numpy as np  # deferred: numpy
    if not arrays:
        raise StoreError(f"cannot write {url}: no arrays given")
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode_npz(data: bytes, url: str) -> dict:
    import numpy as np  # deferred: numpy
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:
        raise StoreError(f"{url} is not a readable .npz: {one_line(e, limit=200)}") from None


def encode_parquet(rows, url: str) -> bytes:
    """Parquet of a pyarrow Table, a list of row dicts or a dict of columns."""
    import pyarrow as pa  # deferred: pyarrow
    import pyarrow.parquet as pq  # deferred: pyarrow
    try:
        if isinstance(rows, pa.Table):
            table = rows
        elif isinstance(rows, Mapping):
            table = pa.table(dict(rows))
        else:
            rows = list(rows)
            if not rows:
                raise StoreError(f"cannot write {url}: no rows given")
            table = pa.Table.from_pylist(rows)
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise StoreError(f"cannot write {url} as Parquet: {one_line(e, limit=200)}") from None
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def decode_parquet(data: bytes, url: str):
    """The pyarrow Table in ``data``."""
    import pyarrow as pa  # deferred: pyarrow
    import pyarrow.parquet as pq  # deferred: pyarrow
    try:
        return pq.read_table(pa.BufferReader(data))
    except Exception as e:
        raise StoreError(f"{url} is not a readable Parquet file: {one_line(e, limit=200)}") from None


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` (a state dict or any weights-only-loadable object) to
    bytes: what the store, the units and the checkpoints write."""
    import torch  # deferred: torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_from_bytes(data: bytes, url: str) -> Any:
    """``torch.load(..., weights_only=True)`` of bytes read from ``url`` (one line naming
    it when they do not load)."""
    import torch  # deferred: torch
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise StoreError(f"cannot read checkpoint {url}: {one_line(e, limit=200)}") from None


def decode_state_dict(data: bytes, url: str) -> dict:
    """A state dict of tensors (through ``ganc.weights.read_state_dict``)."""
    from ..weights import read_state_dict  # deferred: ganc.weights imports torch
    return read_state_dict(data, name=url)
