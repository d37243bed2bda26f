"""Per-sample seeds derived from (run seed, arm, item, condition, sample, stage)."""

import hashlib


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any printable parts; the same parts always give the same seed."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
