"""Analytic FLOPs (1 multiply-add = 2 FLOPs), per DESIGN §7, for sub-model passes and whole decoding runs.

Only matrix products are counted (as torch's FlopCounterMode does): LayerNorm, softmax, GELU and embedding
lookups are left out. Tokenizer decoding is not part of a schedule's cost.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

from core.masking import masked_after
from core.nested import ModelConfig

COMPONENTS = ("qkv", "attention", "out_proj", "mlp", "head")


def pass_flops(cfg: ModelConfig, size: str, n_q: int, n_kv: int, n_logits: int) -> dict[str, int]:
    """One forward of sub-model `size` for one sample: n_q processed positions attending over n_kv positions,
    with the output head on n_logits positions."""
    w = cfg.width(size)
    m = cfg.mlp_ratio * w
    L = cfg.layers
    return {
        "qkv": L * 6 * n_q * w * w,
        "attention": L * 4 * n_q * n_kv * w,  # scores + attention-times-V
        "out_proj": L * 2 * n_q * w * w,
        "mlp": L * 4 * n_q * w * m,
        "head": 2 * n_logits * w * cfg.vocab_size,
    }


def run_flops(cfg: ModelConfig, sizes, actions, mask_schedule: str = "cosine", prefix_len: int = 0,
              guided: bool = False) -> list[dict[str, int]]:
    """Per-image FLOPs of each step of a run, known before it runs: a refresh processes every position; a reuse
    step processes the positions masked at the previous step's input (still masked + just committed)."""
    masked = masked_after(cfg.seq_len - prefix_len, len(sizes), mask_schedule)
    n_seq = cfg.seq_len + 1
    passes = 2 if guided else 1
    out = []
    for k, (size, action) in enumerate(zip(sizes, actions)):
        n_q = n_seq if action == "refresh" else masked[k - 1]
        out.append({c: passes * f for c, f in pass_flops(cfg, size, n_q, n_seq, masked[k]).items()})
    return out


def baseline_step_flops(cfg: ModelConfig, steps: int, mask_schedule: str = "cosine", prefix_len: int = 0,
                        guided: bool = False) -> list[int]:
    """Per-image FLOPs of each step of the baseline: the full model on every position at every step (a refresh
    every step, i.e. no cache), logits for the masked positions, doubled under classifier-free guidance."""
    plan = run_flops(cfg, [cfg.full_size] * steps, ["refresh"] * steps, mask_schedule, prefix_len, guided)
    return [sum(step.values()) for step in plan]


def sizes_table(model) -> list[dict]:
    """One row per nested sub-model: width, heads, parameters it touches, GFLOPs of one full pass per image."""
    cfg = model.cfg
    n = cfg.seq_len + 1
    return [{"size": s, "width": cfg.width(s), "heads": cfg.heads // cfg.divisor(s),
             "parameters (M)": round(model.num_params(s) / 1e6, 3),
             "GFLOPs per full pass": round(sum(pass_flops(cfg, s, n, n, cfg.seq_len).values()) / 1e9, 4)}
            for s in cfg.small_to_large]


def _register_cpu_attention() -> None:
    """torch 2.13 leaves the CPU fused attention kernel out of FlopCounterMode's registry (it counts 0)."""
    target = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    from torch.utils.flop_counter import flop_registry

    if target not in flop_registry:
        register_flop_formula(target)(lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v))


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts CPU fused attention."""
    _register_cpu_attention()
    return FlopCounterMode(display=False)
