"""Seeds derived from a user seed, one per purpose, so every random choice in clonekit traces back to
``--seed`` and two purposes never share a random stream."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` derived from a user seed (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


__all__ = ["derive_seed"]
