"""Keys for stores that limit a key's size: a file id of any length still makes a key.

File ids come from the platforms, and a Teams attachment without a ``uniqueId`` is known by
its name, which may be long (340 CJK characters are 1,020 bytes of UTF-8). DynamoDB allows
1,024 bytes in a sort key and 2,048 in a partition key; S3 Vectors 1,024 in a vector key. A key
that would not fit carries the SHA-256 of its variable part instead, and the full id is kept
beside it (an attribute, or metadata), so that a reader can check what it found.
"""

from __future__ import annotations

import hashlib

HASHED = "h:"  # marks a key whose variable part was replaced by its hash


def bounded_key(prefix: str, body: str, suffix: str = "", *, max_bytes: int) -> str:
    """``prefix + body + suffix`` when that fits in ``max_bytes`` of UTF-8; otherwise
    ``prefix + "h:" + sha256(body) + suffix``. Keys that fit are unchanged, so data stored
    before long ids were hashed stays readable."""
    key = f"{prefix}{body}{suffix}"
    if len(key.encode("utf-8")) <= max_bytes:
        return key
    return f"{prefix}{HASHED}{hashlib.sha256(body.encode('utf-8')).hexdigest()}{suffix}"
