"""Artifact store on fsspec: local folders (``file://``) and S3 (``s3://bucket/prefix``).

Everything a run writes goes through a :class:`Store` rooted at a URL; a run's artifacts
live under ``runs/<run_id>/`` (GUIDE §1), reached with ``store.run(run_id)``. Writes are
atomic (a temporary key, then a move onto the final key); multi-file artifacts are commit
units whose manifest is written last.

S3 endpoint and credentials: ``endpoint_url`` (the ``store.endpoint_url`` config field) or
the ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` environment variables for S3-compatible
servers; credentials from the usual AWS environment variables / config files (never
logged, never part of a URL this package prints).

Modules, each importing only those above it in this list:

- :mod:`.keys`: URLs, keys, run ids and :class:`StoreError`;
- :mod:`.retry`: the retry policy of all S3 traffic (:func:`~.retry.retrying`);
- :mod:`.fs`: :class:`~.fs.ObjectFS`, bytes under a root, written atomically;
- :mod:`.pyarrowfs`: pyarrow's retried view of an S3 store (Ray's storage);
- :mod:`.codecs`: JSON, .npz, Parquet and torch to bytes and back;
- :mod:`.local`: reading a local store without following links (pull, runs);
- :mod:`.lease`: one writer per run, the lease object ``runs/<id>/lease.json``;
- :mod:`.units`: commit units and their manifests;
- :mod:`.facade`: :class:`Store`, :func:`open_store`, :func:`store_from_config`.
"""
from __future__ import annotations

from .codecs import torch_bytes, torch_from_bytes
from .facade import Store, open_store, store_from_config
from .keys import StoreError, split_url
from .units import MANIFEST

__all__ = ["Store", "StoreError", "open_store", "store_from_config", "split_url", "MANIFEST",
           "torch_bytes", "torch_from_bytes"]
