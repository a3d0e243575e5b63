"""pyarrow's view of a store on S3 (Ray Train's and Tune's storage), retried like the
store's own calls: see :meth:`ganc.store.Store.pyarrow_fs`.

Imports pyarrow at load: only :meth:`~ganc.store.Store.pyarrow_fs` imports this module."""
from __future__ import annotations

import io
import tempfile

import pyarrow.fs as pafs
from pyarrow import PythonFile

from .retry import retrying

SPOOL_BYTES = 64 << 20      # an upload larger than this is spooled to a local temp file


class RetryingFSSpecHandler(pafs.FSSpecHandler):
    """pyarrow's bridge to an fsspec filesystem with every call through
    :func:`ganc.store.retry.retrying`. Files are read whole and written whole (spooled, uploaded
    when closed), so a retried call never resumes half a transfer."""

    def get_file_info(self, paths):
        return retrying("check", _url(paths[0] if paths else ""), super().get_file_info, paths)

    def get_file_info_selector(self, selector):
        return retrying("list", _url(selector.base_dir), super().get_file_info_selector,
                        selector)

    def create_dir(self, path, recursive):
        return retrying("write", _url(path), super().create_dir, path, recursive)

    def delete_dir(self, path):
        return retrying("remove", _url(path), super().delete_dir, path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        return retrying("remove", _url(path), super().delete_dir_contents, path,
                        missing_dir_ok)

    def delete_file(self, path):
        return retrying("remove", _url(path), super().delete_file, path)

    def move(self, src, dest):
        return retrying("write", _url(dest), super().move, src, dest)

    def copy_file(self, src, dest):
        return retrying("write", _url(dest), super().copy_file, src, dest)

    def open_input_stream(self, path):
        return self._read_whole(path)

    def open_input_file(self, path):
        return self._read_whole(path)

    def open_output_stream(self, path, metadata):
        return PythonFile(_UploadOnClose(self.fs, path), mode="w")

    def open_append_stream(self, path, metadata):
        raise NotImplementedError("append streams are not supported on S3")

    def _read_whole(self, path):
        data = retrying("read", _url(path), self.fs.cat_file, path)
        return PythonFile(io.BytesIO(data), mode="r")


class _UploadOnClose(io.RawIOBase):
    """A write-only file spooled locally and uploaded in one retried call when closed."""

    def __init__(self, fs, path: str):
        super().__init__()
        self._fs, self._path = fs, path
        self._buf = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)

    def writable(self):
        return True

    def write(self, b):
        return self._buf.write(b)

    def tell(self):
        return self._buf.tell()

    def close(self):
        if self.closed:
            return
        try:
            self._buf.seek(0)
            data = self._buf.read()
            retrying("write", _url(self._path), self._fs.pipe_file, self._path, data)
        finally:
            self._buf.close()
            super().close()


def _url(path: str) -> str:
    return f"s3://{path}"
