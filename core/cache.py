"""Attention key/value cache for decoding, and the rule that decides when to refresh it.

A *refresh* pass computes every position (class token included) and stores each layer's K/V. A *reuse* pass
computes only the active positions and overwrites their entries; everything else is read as stored. Under
width nesting K/V widths differ per sub-model, so a cache is only valid for the size that wrote it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

REFRESH, REUSE = "refresh", "reuse"


class KVCache:
    """Per-layer K/V of shape (rows, heads, 1 + seq_len, head_dim) plus the tokens each entry was computed from.

    Buffers are allocated on a sub-model's first write and then updated in place, one set per head count (so
    per sub-model size): a decode is a fixed sequence of static-shape operations on fixed memory, which CUDA
    graphs can replay.
    """

    def __init__(self, layers: int):
        self.layers = layers
        self.buffers: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # heads -> per layer (K, V)
        self.size: str | None = None  # the sub-model that wrote the entries
        self.tokens: torch.Tensor | None = None  # (rows, seq_len) token ids the entries were computed from

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, seq_index: torch.Tensor | None):
        """Store fresh K/V (all positions when seq_index is None, else at seq_index (rows, n)); return the
        layer's whole K/V for attention."""
        heads = k.shape[1]
        if seq_index is None and heads not in self.buffers:
            self.buffers[heads] = [(torch.empty_like(k), torch.empty_like(v)) for _ in range(self.layers)]
        kb, vb = self.buffers[heads][layer]
        if seq_index is None:
            kb.copy_(k)
            vb.copy_(v)
        else:
            idx = seq_index[:, None, :, None].expand(-1, heads, -1, k.shape[3])
            kb.scatter_(2, idx, k)
            vb.scatter_(2, idx, v)
        return kb, vb

    def mark_written(self, tokens: torch.Tensor, positions: torch.Tensor | None, size: str):
        """Record the tokens the entries now reflect (after a pass that wrote `positions`, or all of them)."""
        if positions is None:
            if self.tokens is None:
                self.tokens = torch.empty_like(tokens)
            self.tokens.copy_(tokens)
            self.size = size
        else:
            self.tokens.scatter_(1, positions, tokens.gather(1, positions))

    def stale(self, tokens: torch.Tensor) -> torch.Tensor:
        """(rows, seq_len) bool: positions whose token changed since its entry was written."""
        return tokens != self.tokens


@dataclass(frozen=True)
class CachePolicy:
    """When to refresh: at the first step, whenever the sub-model size changes (K/V widths differ), and once the
    cache is `stride` steps old. stride=None means never by age: refresh only on size changes. stride=1 refreshes
    every step, which is plain MaskGIT."""

    stride: int | None = 1

    def __post_init__(self):
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(f"cache_stride must be an integer >= 1 or 'never', got {self.stride!r}")

    def actions(self, sizes) -> list[str]:
        """The refresh/reuse action of every step of a size schedule: a pure function of schedule and stride,
        so costs can be planned before anything runs."""
        out, last_size, last_refresh = [], None, 0
        for step, size in enumerate(sizes):
            if size != last_size or (self.stride is not None and step - last_refresh >= self.stride):
                out.append(REFRESH)
                last_size, last_refresh = size, step
            else:
                out.append(REUSE)
        return out


def parse_stride(text: str | int | None) -> int | None:
    """'never'/'inf'/None -> None; otherwise a positive integer, with an error that says what is accepted."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        t = str(text).strip().lower()
        if t in ("never", "inf", "infinity", "none"):
            return None
        try:
            value = int(t)
        except ValueError:
            raise ValueError(f"cache_stride must be a positive integer or 'never', got {text!r}") from None
    if value < 1:
        raise ValueError(f"cache_stride must be >= 1 (1 = refresh every step) or 'never', got {value}")
    return value


def format_stride(stride: int | None) -> str:
    return "never" if stride is None else str(stride)
