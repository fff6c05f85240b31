"""One decode as a fixed sequence of static-shape steps on preallocated buffers (the static decode plan).

The schedule, the cache stride and the mask schedule fix, before anything runs, every step's sub-model size, its
refresh/reuse action and how many positions it computes and gives logits: a refresh computes all of them, a reuse
step the positions masked at the previous step's input (still masked, plus those just committed, whose cached
K/V are stale). So a `Decoder` runs each step without a host synchronisation, and on a GPU the whole decode can be
captured once as a CUDA graph and replayed (`capture`, then `replay`).

The stepping rule (DESIGN §6) is `commit_step`. Its randomness is drawn by `Decoder.draw` in a fixed order (per
step: the sampling noise, then the choice noise) from a generator seeded with the config's seed, so the eager
path and a graph replay draw the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.cache import REFRESH, CachePolicy, KVCache
from core.masking import masked_after


def gumbel(u: torch.Tensor) -> torch.Tensor:
    """Gumbel noise from uniform noise."""
    return -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp(min=1e-20))


def choice_noise_scale(config, step: int) -> float:
    """MaskGIT anneals the choice noise to zero: choice_temperature * (1 - (step + 1) / steps)."""
    return config.choice_temperature * (1.0 - (step + 1) / config.steps)


def noise_buffers(config, step: int, rows: int, m: int, vocab: int, device) -> tuple:
    """Step `step`'s noise buffers, filled by `Decoder.draw`: (sampling noise (rows, m, vocab) or None at
    temperature 0, choice noise (rows, m) or None when its scale is 0). Uniform in [0, 1), drawn in that order."""
    u_sample = None if config.temperature == 0 else torch.empty(rows, m, vocab, device=device)
    u_choice = None if choice_noise_scale(config, step) <= 0 else torch.empty(rows, m, device=device)
    return u_sample, u_choice


def commit_step(logits: torch.Tensor, step: int, keep_masked: int, config, u_sample, u_choice):
    """Sample a token for every masked position and choose which to commit.

    logits: (B, m, V) for the m masked positions. Returns (sampled (B, m), confidence (B, m), commit (B, m) bool):
    the m - keep_masked most confident samples are committed; confidence is the sample's log-probability under
    the sampling distribution plus Gumbel noise scaled by choice_noise_scale.
    """
    t = config.temperature
    if t == 0:
        sampled = logits.argmax(-1)
        logp = torch.log_softmax(logits.float(), -1)
    else:
        logp = torch.log_softmax(logits.float() / t, -1)
        sampled = (logp + gumbel(u_sample)).argmax(-1)
    confidence = logp.gather(-1, sampled.unsqueeze(-1)).squeeze(-1)
    if u_choice is not None:
        confidence = confidence + choice_noise_scale(config, step) * gumbel(u_choice)
    top = confidence.topk(logits.shape[1] - keep_masked, dim=1).indices
    commit = torch.zeros_like(sampled, dtype=torch.bool).scatter_(1, top, True)
    return sampled, confidence, commit


def leading(mask: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) indices of the True entries of each row, ascending; every row has exactly n."""
    return torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :n]


@dataclass
class StepTensors:
    """What one step computed, on the device (read them only after the step has run)."""

    mpos: torch.Tensor  # (B, m) positions masked at the step's input
    sampled: torch.Tensor  # (B, m) a sample for each
    confidence: torch.Tensor  # (B, m)
    commit: torch.Tensor  # (B, m) bool
    computed: torch.Tensor  # (B, seq_len) bool, positions whose K/V this step computed
    logits: torch.Tensor  # (passes * B, m, V) the model's logits before guidance


class Decoder:
    """A decode of `config` for `batch` samples (and a prefix of `prefix_len` given tokens) on `model`."""

    def __init__(self, model, config, batch: int, guided: bool, prefix_len: int = 0):
        cfg = model.cfg
        self.model, self.config, self.B, self.P = model, config, batch, prefix_len
        self.schedule = config.plan
        self.actions = CachePolicy(config.cache_stride).actions(self.schedule)
        self.masked = masked_after(cfg.seq_len - prefix_len, config.steps, config.mask_schedule)
        self.passes = 2 if guided else 1
        self.device = next(model.parameters()).device
        self.tokens = torch.full((batch, cfg.seq_len), cfg.mask_id, dtype=torch.long, device=self.device)
        self.labels = torch.full((self.passes * batch,), cfg.null_class, dtype=torch.long, device=self.device)
        self.cache = KVCache(cfg.layers)  # with guidance, rows B..2B-1 hold the unconditional pass
        self.gen = torch.Generator(device=self.device)
        self.noise = [noise_buffers(config, k, batch, self.masked[k], cfg.vocab_size, self.device)
                      for k in range(config.steps)]  # static buffers, refilled step by step after each start
        self.graph = None
        self.out: list[StepTensors] | None = None

    def n_computed(self, k: int) -> int:
        """Positions step k processes per sample (the class token counts on a refresh)."""
        return self.model.cfg.seq_len + 1 if self.actions[k] == REFRESH else self.masked[k - 1]

    def start(self, labels: torch.Tensor, prefix: torch.Tensor | None = None, seed: int = 0) -> None:
        """Reset for a new decode: all masked but the prefix, the labels (and null labels under guidance), the
        generator seeded."""
        self.tokens.fill_(self.model.cfg.mask_id)
        if prefix is not None:
            self.tokens[:, : self.P] = prefix
        self.labels[: self.B] = labels
        self.gen.manual_seed(seed)

    def draw(self, k: int) -> None:
        """Refill step k's noise buffers (the next numbers of the generator)."""
        for buf in self.noise[k]:
            if buf is not None:
                buf.uniform_(generator=self.gen)

    def step(self, k: int) -> StepTensors:
        """Run step k on the current tokens (updated in place); no host synchronisation."""
        cfg, B, m = self.model.cfg, self.B, self.masked[k]
        size = self.schedule[k]
        masked = self.tokens == cfg.mask_id
        mpos = leading(masked, m)
        rows = self.tokens.repeat(self.passes, 1)
        if self.actions[k] == REFRESH:
            out = self.model(rows, self.labels, size, cache=self.cache, logit_index=mpos.repeat(self.passes, 1))
            self.cache.mark_written(rows, None, size)
            computed = torch.ones_like(masked)
        else:  # masked positions plus those committed since their entry was written; the rest are read
            computed = masked | self.cache.stale(rows)[:B]
            pos = leading(computed, self.n_computed(k)).repeat(self.passes, 1)
            idx = leading(masked.gather(1, pos[:B]), m).repeat(self.passes, 1)
            out = self.model(rows.gather(1, pos), self.labels, size, positions=pos, cache=self.cache,
                             logit_index=idx)
            self.cache.mark_written(rows, pos, size)
        out = out.float()  # bfloat16 under autocast; guidance and sampling in float32
        logits = out[B:] + self.config.cfg_scale * (out[:B] - out[B:]) if self.passes == 2 else out
        sampled, conf, commit = commit_step(logits, k, self.masked[k + 1], self.config, *self.noise[k])
        self.tokens.scatter_(1, mpos, torch.where(commit, sampled, cfg.mask_id))
        return StepTensors(mpos, sampled, conf, commit, computed, out)

    def run(self) -> torch.Tensor:
        """Every step, eagerly or as the captured graph; returns the final tokens (B, seq_len)."""
        if self.graph is not None:
            return self.replay()
        for k in range(self.config.steps):
            self.draw(k)
            self.step(k)
        return self.tokens

    def capture(self, labels: torch.Tensor, prefix: torch.Tensor | None = None, autocast: bool = False) -> None:
        """Record the whole decode as one CUDA graph (after a warm-up run on a side stream, which allocates the
        cache buffers and picks kernels). `autocast` runs the matrix products in bfloat16."""
        amp = torch.autocast("cuda", torch.bfloat16, enabled=autocast, cache_enabled=False)  # graphs need no cache
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), amp:
            self.start(labels, prefix)
            self.run()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), amp:
            self.out = [self.step(k) for k in range(self.config.steps)]

    def replay(self) -> torch.Tensor:
        """Run the captured decode from the state `start` set (call it first)."""
        for k in range(self.config.steps):
            self.draw(k)
        self.graph.replay()
        return self.tokens
