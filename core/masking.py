"""Mask schedules gamma(r): the fraction of tokens still masked after a fraction r of decoding (gamma(0) = 1,
gamma(1) = 0). Training draws its masking ratio from the same cosine curve."""
from __future__ import annotations

import math

MASK_SCHEDULES = {
    "cosine": lambda r: math.cos(math.pi / 2 * r),
    "linear": lambda r: 1.0 - r,
    "arccos": lambda r: math.acos(r) / (math.pi / 2),
}


def gamma(name: str, r: float) -> float:
    if name not in MASK_SCHEDULES:
        raise ValueError(f"unknown mask schedule {name!r}; choose one of: {', '.join(MASK_SCHEDULES)}")
    return MASK_SCHEDULES[name](min(max(r, 0.0), 1.0))


def masked_after(n: int, steps: int, name: str = "cosine") -> list[int]:
    """Masked-token counts m_0..m_K: m_0 = n and, after step k, min(floor(n * gamma((k+1)/K)), m_k - 1), so every
    step commits at least one token and none is left after the last (steps <= n)."""
    counts = [n]
    for k in range(steps):
        counts.append(max(0, min(math.floor(n * gamma(name, (k + 1) / steps)), counts[-1] - 1)))
    return counts
