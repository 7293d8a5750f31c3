"""Deterministic Recurly-like identifiers, and the seeds they (and the sites' RNGs) start from.

Recurly ids are 12-13 character lowercase alphanumerics and uuids are 32 hex digits. Here every
object of a site takes the next number of one counter, and the number is spread over the id space
by a multiplicative bijection (a Weyl sequence), so ids are unique, look random, and depend only on
the site's salt and the order of creation - which the event queue makes deterministic.
"""

from __future__ import annotations

import hashlib

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_SPACE = 36**12
_UUID_SPACE = 16**32


def _golden_multiplier(space: int) -> int:
    """An integer near space/phi that is coprime to 2 and 3, hence invertible modulo 36**k/16**k."""
    m = int(space * 0.6180339887498949)
    while m % 2 == 0 or m % 3 == 0:
        m += 1
    return m


_ID_MULT = _golden_multiplier(_ID_SPACE)
_UUID_MULT = _golden_multiplier(_UUID_SPACE)


def derive_seed(*parts: object, size: int = 8) -> int:
    """A seed of `size` bytes from `parts`, the same on every run and machine (unlike hash())."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:size], "big")


class IdMint:
    """Hands out (id, uuid) pairs; one mint per site, so ids never collide across resources."""

    def __init__(self, salt: int):
        self._id_offset = (salt * 7919) % _ID_SPACE
        self._uuid_offset = (salt * 104_729) % _UUID_SPACE
        self._count = 0

    def next_id(self) -> str:
        self._count += 1
        n = (self._count * _ID_MULT + self._id_offset) % _ID_SPACE
        chars = []
        for _ in range(12):
            n, r = divmod(n, 36)
            chars.append(_ALPHABET[r])
        return "".join(chars)

    def next_uuid(self) -> str:
        """A uuid for the object created last; derived from the same counter."""
        return format((self._count * _UUID_MULT + self._uuid_offset) % _UUID_SPACE, "032x")
