"""The texts of API keys and signing secrets: made from 32 random bytes, parsed, hashed.

An API key reads `ppk_<id>_<secret>`: the id (16 hex digits) is public and finds the row,
the secret part (32 random bytes, base64url) is kept only as its SHA-256, which is enough
for a key of that entropy. A signing secret is kept as it is: an HMAC is checked with its key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "ppk"
RANDOM_BYTES = 32
SECRET_TEXT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes in base64url, no padding
KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def random_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(RANDOM_BYTES)).rstrip(b"=").decode()


def new_id() -> str:
    return secrets.token_hex(8)


def new_key() -> tuple[str, str, bytes]:
    """(id, the key's text, the hash to keep)."""
    key_id, secret = new_id(), random_text()
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", digest(secret)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def split_key(text: str) -> tuple[str, str] | None:
    """(id, secret part) of a well-formed key's text, else None."""
    if not isinstance(text, str) or len(text) > 100:
        return None
    prefix, _, rest = text.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not KEY_ID.match(key_id) or not SECRET_TEXT.match(secret):
        return None
    return key_id, secret


def matches(secret: str, kept: bytes) -> bool:
    """Whether the secret part hashes to the kept hash, in constant time."""
    return hmac.compare_digest(digest(secret), bytes(kept))
