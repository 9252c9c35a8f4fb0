"""Store URLs: `file:///path` (or a bare path) and `s3://bucket/prefix`, checked and split.

Errors say what is wrong without repeating the URL: a URL can hold a password.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# S3's rule for bucket names, which MinIO, R2 and SeaweedFS follow too.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def split_s3_url(url: str) -> tuple[str, str]:
    """The bucket and prefix of `s3://bucket/prefix`; ValueError for a bucket S3 refuses."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError("an s3:// store URL needs a bucket: s3://bucket/prefix")
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket or _is_ip(bucket):
        raise ValueError(
            "not a valid bucket name: 3 to 63 lowercase letters, digits, "
            "dots and hyphens, starting and ending with a letter or digit"
        )
    return bucket, prefix.strip("/")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def store_path(url: str) -> Path | None:
    """The directory of a file store URL (`file:///path` or a bare path); None for S3."""
    if url.startswith("s3://"):
        split_s3_url(url)
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        raise ValueError("unsupported store URL: use file:///path or s3://bucket/prefix")
    path = unquote(parts.path) if parts.scheme else url
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        path = parts.netloc + path  # file://relative/dir
    return Path(path).expanduser().resolve()
