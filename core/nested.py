"""Nested (width-sliced) bidirectional transformer over VQ tokens.

One set of full-size weights serves every sub-model. Sub-model "p" uses the leading d/p features of the residual
stream, the first H/p heads (head_dim is fixed), the first 4d/p MLP units and LayerNorm[:d/p]; the output head
maps d/p -> the full vocabulary. Nothing is copied per size: each forward slices the stored tensors.

Sequence layout: index 0 is the class token, indices 1..seq_len are token positions 0..seq_len-1. A video is
`frames` frames of seq_len/frames tokens each, frame after frame; its positions add a learned frame (time)
embedding to the per-frame spatial one.

q, k and v live in one fused weight whose rows are grouped per head ([q_0 k_0 v_0 q_1 k_1 v_1 ...], each head_dim
rows), so the first H/p heads of all three are one leading slice and one matrix product.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from core.cache import KVCache

# Name -> width divisor p. Order is smallest to largest; "L" (p=1) is the full model.
DEFAULT_SIZES: dict[str, int] = {"XS": 8, "S": 4, "M": 2, "L": 1}


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 512  # tokenizer codebook size; id vocab_size is [MASK]
    num_classes: int = 10  # id num_classes is the null class (classifier-free guidance)
    seq_len: int = 64  # tokens per sample (8x8 grid), conditioning prefix included
    dim: int = 256  # DESIGN §4; heads stays 8 so that XS (p=8) keeps one whole head
    heads: int = 8
    layers: int = 8
    mlp_ratio: int = 4
    frames: int = 1  # > 1: a video of `frames` frames of seq_len/frames tokens, with a learned frame embedding
    sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SIZES))

    def __post_init__(self):
        for name in ("vocab_size", "num_classes", "seq_len", "dim", "heads", "layers", "mlp_ratio", "frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ValueError(f"ModelConfig.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.seq_len % self.frames:
            raise ValueError(f"ModelConfig.seq_len ({self.seq_len}) must be divisible by frames ({self.frames})")
        if not self.sizes or 1 not in self.sizes.values():
            raise ValueError(f"ModelConfig.sizes must include a full-size entry (divisor 1), got {self.sizes}")
        for name, p in self.sizes.items():
            if p < 1 or self.heads % p:
                raise ValueError(f"ModelConfig.sizes[{name!r}] = {p}: the divisor must divide heads ({self.heads})")

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def tokens_per_frame(self) -> int:
        return self.seq_len // self.frames

    @property
    def full_size(self) -> str:
        return next(n for n, p in self.sizes.items() if p == 1)

    @property
    def small_to_large(self) -> list[str]:
        """The size names from the narrowest sub-model to the full model."""
        return sorted(self.sizes, key=lambda s: -self.sizes[s])

    def width(self, size: str) -> int:
        return self.dim // self.divisor(size)

    def divisor(self, size: str) -> int:
        if size not in self.sizes:
            raise ValueError(f"unknown sub-model size {size!r}; known sizes: {', '.join(self.sizes)}")
        return self.sizes[size]

    def to_dict(self) -> dict:
        return asdict(self)


_VIEWS = WeakIdKeyDictionary()  # parameter -> (its data_ptr when the views were made, {shape: view})


def leading_index(shape) -> tuple[slice, ...]:
    """The index of a tensor's leading `shape` block (each dimension's first n entries)."""
    return tuple(slice(0, n) for n in shape)


def leading_block(p: torch.Tensor, *shape: int) -> torch.Tensor:
    """The leading `shape` block of parameter `p`: the slice a sub-model uses.

    Outside autograd (decoding, evaluation) the block is a detached view made once and then reused: slicing a
    Parameter on every op went through the autograd dispatcher each time, a few percent of a decode with the small
    sub-models. A view shares the parameter's memory, so in-place updates (optimizer steps,
    load_state_dict) show through it; a parameter moved to new memory (.to(), .half(), a deepcopy) gets new views."""
    index = leading_index(shape)
    if torch.is_grad_enabled():
        return p[index]
    ptr, views = _VIEWS.get(p, (None, None))
    if ptr != p.data_ptr():
        ptr, views = p.data_ptr(), {}
        _VIEWS[p] = (ptr, views)
    view = views.get(shape)
    if view is None:
        view = views[shape] = p.detach()[index]
    return view


def _layer_norm(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    w = x.shape[-1]
    return F.layer_norm(x, (w,), leading_block(ln.weight, w), leading_block(ln.bias, w), ln.eps)


def _linear(x: torch.Tensor, lin: nn.Linear, out_features: int) -> torch.Tensor:
    return F.linear(x, leading_block(lin.weight, out_features, x.shape[-1]), leading_block(lin.bias, out_features))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dim
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)  # rows grouped per head (module docstring)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.mlp_ratio * d)
        self.fc2 = nn.Linear(cfg.mlp_ratio * d, d)
        self.head_dim = cfg.head_dim
        self.mlp_ratio = cfg.mlp_ratio

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, seq_index: torch.Tensor | None = None):
        """x: (B, n, w). With a cache: this layer's fresh K/V are written at `seq_index` (B, n), or at every
        position when seq_index is None, and attention reads all cached positions."""
        B, n, w = x.shape
        h = w // self.head_dim
        qkv = _linear(_layer_norm(x, self.ln1), self.qkv, 3 * w).view(B, n, h, 3, self.head_dim)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)  # each (B, h, n, head_dim)
        if cache is not None:
            k, v = cache.write(layer, k, v, seq_index)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + _linear(a.transpose(1, 2).reshape(B, n, w), self.proj, w)
        y = _layer_norm(x, self.ln2)
        y = F.gelu(_linear(y, self.fc1, self.mlp_ratio * w))
        return x + _linear(y, self.fc2, w)


class NestedTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, d)
        self.cls_emb = nn.Embedding(cfg.num_classes + 1, d)
        # One entry per position of a frame (of the image, when frames == 1); the class token has none.
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.tokens_per_frame, d))
        self.frame_emb = nn.Parameter(torch.zeros(cfg.frames, d)) if cfg.frames > 1 else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.vocab_size)
        self.apply(self._init)
        nn.init.normal_(self.pos_emb, std=0.02)
        if self.frame_emb is not None:
            nn.init.normal_(self.frame_emb, std=0.02)
        for b in self.blocks:  # GPT-2 style: keep the residual stream's variance flat with depth
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * cfg.layers))
            nn.init.normal_(b.fc2.weight, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def positions(self, w: int) -> torch.Tensor:
        """(seq_len, w): the position embedding of every token position (a frame's, plus its frame's)."""
        pos = leading_block(self.pos_emb, 1, self.cfg.tokens_per_frame, w)[0]
        if self.frame_emb is None:
            return pos
        return (pos.unsqueeze(0) + leading_block(self.frame_emb, self.cfg.frames, w)[:, None]).reshape(-1, w)

    def forward(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        size: str | None = None,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        logit_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of sub-model `size` (default: full).

        tokens: (B, seq_len) for a full pass, or (B, n) tokens at `positions` (B, n) for a partial pass.
        A full pass includes the class token; with a cache it refreshes every entry. A partial pass needs a cache
        holding the other positions' K/V: it computes only the given positions and overwrites their entries.
        logit_index: (B, m) indices into the given tokens whose logits are wanted (default all); the head runs
        only there, because a decoder needs logits for masked positions alone.
        Returns (B, m, vocab_size).
        """
        cfg = self.cfg
        w = cfg.width(size or cfg.full_size)
        pos = self.positions(w)
        if positions is None:
            x = leading_block(self.tok_emb.weight, cfg.vocab_size + 1, w)[tokens] + pos
            x = torch.cat([leading_block(self.cls_emb.weight, cfg.num_classes + 1, w)[labels].unsqueeze(1), x], dim=1)
            seq_index = None
        else:
            if cache is None:
                raise ValueError("a partial forward (positions given) needs a KV cache holding the other positions")
            seq_index = positions + 1
            x = leading_block(self.tok_emb.weight, cfg.vocab_size + 1, w)[tokens] + pos[positions]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, seq_index)
        if positions is None:
            x = x[:, 1:]
        if logit_index is not None:
            x = torch.gather(x, 1, logit_index.unsqueeze(-1).expand(-1, -1, w))
        return _linear(_layer_norm(x, self.ln_f), self.head, cfg.vocab_size)

    def num_params(self, size: str | None = None) -> int:
        """Parameters sub-model `size` touches: the size of its slices, counted on a weightless (meta) copy."""
        with torch.device("meta"):
            return sum(t.numel() for t in NestedTransformer(sub_config(self.cfg, size or self.cfg.full_size)).parameters())


def sub_config(cfg: ModelConfig, size: str) -> ModelConfig:
    """The config of a standalone transformer as wide as sub-model `size`."""
    p = cfg.divisor(size)
    return ModelConfig(
        vocab_size=cfg.vocab_size, num_classes=cfg.num_classes, seq_len=cfg.seq_len, dim=cfg.dim // p,
        heads=cfg.heads // p, layers=cfg.layers, mlp_ratio=cfg.mlp_ratio, frames=cfg.frames, sizes={"L": 1},
    )


def extract_submodel(model: NestedTransformer, size: str) -> NestedTransformer:
    """A standalone full-size transformer of width d/p holding copies of the slices sub-model `size` uses.
    Exists to prove the nesting (tests) and to export a small model on its own."""
    small = NestedTransformer(sub_config(model.cfg, size))
    shapes = {name: t.shape for name, t in small.state_dict().items()}
    small.load_state_dict({name: t[leading_index(shapes[name])].clone() for name, t in model.state_dict().items()})
    return small


def embed_submodel(model: NestedTransformer, state: dict[str, torch.Tensor]) -> str:
    """The inverse of extract_submodel: copy `state`, the weights of a standalone transformer as wide as one of
    `model`'s sub-models (same depth, head_dim and vocabulary), into the slices that sub-model uses. The other
    entries keep `model`'s own values, so a trained model becomes a wider one's sub-model: its sub-model of divisor
    q becomes the wider one's of divisor q * (the width ratio), unchanged. Weights of `model`'s full width simply
    replace its own. Returns the name of the sub-model that now computes what `state` did."""
    cfg = model.cfg
    if "ln_f.weight" not in state:
        raise ValueError("the weights are not a nested transformer's (no ln_f.weight)")
    width = state["ln_f.weight"].shape[0]
    size = next((s for s in cfg.sizes if cfg.width(s) == width), None)
    if size is None:
        widths = ", ".join(f"{s} {cfg.width(s)}" for s in cfg.small_to_large)
        raise ValueError(f"weights of width {width} are no sub-model of this width-{cfg.dim} model (widths: {widths})")
    with torch.device("meta"):
        expected = {k: tuple(t.shape) for k, t in NestedTransformer(sub_config(cfg, size)).state_dict().items()}
    wrong = sorted(set(expected) ^ set(state)) + [f"{k} {tuple(state[k].shape)} (want {v})" for k, v in
                                                   expected.items() if k in state and tuple(state[k].shape) != v]
    if wrong:
        raise ValueError(f"the weights do not have the layout of sub-model {size} of this model: {', '.join(wrong[:4])}")
    with torch.no_grad():
        for name, t in model.state_dict().items():  # state_dict() shares the parameters' memory
            t[leading_index(state[name].shape)].copy_(state[name])
    return size


def upgrade_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Read a checkpoint of the first format (separate `blocks.i.{q,k,v}`, and a position entry for the class
    token that no forward used) as the current one: q/k/v interleaved per head into `blocks.i.qkv`, the unused
    entry dropped. The function is unchanged; current checkpoints pass through as they are."""
    state = dict(state)
    if state["pos_emb"].shape[1] == cfg.tokens_per_frame + 1:
        state["pos_emb"] = state["pos_emb"][:, 1:]
    hd = cfg.head_dim
    for i in range(cfg.layers):
        names = [f"blocks.{i}.{part}" for part in "qkv"]
        if f"{names[0]}.weight" not in state:
            continue
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{n}.{kind}") for n in names]
            per_head = torch.stack([p.reshape(cfg.heads, hd, *p.shape[1:]) for p in parts], dim=1)
            state[f"blocks.{i}.qkv.{kind}"] = per_head.reshape(3 * cfg.dim, *parts[0].shape[1:])
    return state
