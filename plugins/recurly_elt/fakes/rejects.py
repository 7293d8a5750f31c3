"""Which records a fake refuses under `--reject SHARE`: chosen by a hash of the seed and a token
(the record's identifying values), so the same seed refuses the same records in every run, and
changing the value the token is made of (a fixed email) gives the record a fresh draw."""

from __future__ import annotations

import hashlib


def chosen(seed: int, share: float, token: str) -> bool:
    if share <= 0:
        return False
    digest = hashlib.blake2b(f"{seed}:{token}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share
