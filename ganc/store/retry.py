"""The one retry policy of ganc's S3 traffic (the store and Ray's storage)."""
from __future__ import annotations

import logging
import re
import sys
import time

from ..errors import one_line


log = logging.getLogger("ganc.store")

# S3 calls that fail for a passing reason (throttling, a 5xx, a refused or dropped
# connection) are retried after these pauses (seconds), each attempt logged as one line
# naming the action, the URL and the error (never a credential); then the error stands.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
THROTTLING_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "SlowDown",
                    "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled",
                    "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                    "ServiceUnavailable", "BandwidthLimitExceeded"}


def transient(e: BaseException) -> bool:
    """Whether an S3 error is worth retrying: throttling, a 5xx answer, or no connection."""
    try:
        # deferred: botocore (s3fs's client) is only needed once an S3 call failed
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
        from botocore.parsers import ResponseParserError
    except ImportError:  # pragma: no cover
        return False
    # what s3fs itself would retry (it does not: see ganc.store.fs.s3_filesystem)
    passing = (ConnectionError, HTTPClientError, ResponseParserError, TimeoutError,
               *_aiohttp())
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, passing):
            return True
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return err.get("Code") in THROTTLING_CODES or int(status) >= 500 \
                or str(err.get("Code", "")).startswith("5")
        if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, PermissionError)):
            text = str(e)
            if any(code in text for code in THROTTLING_CODES) or \
                    re.search(r"\b50[0-4]\b", text):
                return True
        e = e.__cause__ or e.__context__
    return False


def _aiohttp() -> tuple:
    """aiohttp's payload error and urllib3's short read (a dropped transfer), if loaded."""
    found = []
    for module, name in (("aiohttp", "ClientPayloadError"),
                         ("urllib3.exceptions", "IncompleteRead")):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def retrying(action: str, url: str, fn, *args):
    """``fn(*args)``, retried on transient S3 errors after each pause of
    :data:`RETRY_DELAYS` (about 30 s in all; s3fs and botocore try once each), each
    retry logged as one line naming the action, the URL and the error; then the error
    stands. The one retry policy of ganc's S3 traffic (the store and Ray's storage)."""
    for attempt, delay in enumerate(tuple(RETRY_DELAYS) + (None,), start=1):
        try:
            return fn(*args)
        except Exception as e:
            if delay is None or not transient(e):
                raise
            log.warning("store: %s %s failed (%s); retry %d/%d in %.0fs", action, url,
                        one_line(e, limit=200), attempt, len(RETRY_DELAYS), delay)
            time.sleep(delay)
