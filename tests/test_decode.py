import math

import numpy as np
import pytest
import torch

from core.decode import DecodeConfig, decode, fast_generate, generate, planned_flops
from core.nested import ModelConfig, NestedTransformer
from core.flops import flop_counter
from core.masking import masked_after


GAMMA = {"cosine": lambda r: math.cos(math.pi / 2 * r), "linear": lambda r: 1 - r,
         "arccos": lambda r: math.acos(r) / (math.pi / 2)}


def plain_maskgit(model, config, labels):
    """Reference MaskGIT written from DESIGN §6, not from the project's decoder: each step runs its sub-model on
    every position (no cache), samples every masked position, and commits the most confident. Randomness follows
    the documented order: per step, uniform sampling noise (B, m, V) unless the temperature is 0, then uniform
    choice noise (B, m) while its annealed scale is above 0, from a generator seeded with the config's seed."""
    cfg = model.cfg
    y = torch.tensor(labels)
    B, N, K = len(labels), cfg.seq_len, config.steps
    tokens = torch.full((B, N), cfg.mask_id)
    gen = torch.Generator().manual_seed(config.seed)
    gumbel = lambda u: -torch.log((-torch.log(u.clamp(1e-20, 1.0))).clamp(min=1e-20))  # noqa: E731
    for k, size in enumerate(config.plan):
        masked = torch.stack([(row == cfg.mask_id).nonzero().squeeze(1) for row in tokens])  # (B, m) ascending
        m = masked.shape[1]
        keep = min(math.floor(N * GAMMA[config.mask_schedule]((k + 1) / K)), m - 1)
        with torch.no_grad():
            logits = model(tokens, y, size)
            if config.cfg_scale != 1.0:
                uncond = model(tokens, torch.full_like(y, cfg.null_class), size)
                logits = uncond + config.cfg_scale * (logits - uncond)
        logits = torch.stack([logits[b, masked[b]] for b in range(B)])
        if config.temperature == 0:
            logp = torch.log_softmax(logits, -1)
            sampled = logp.argmax(-1)
        else:
            logp = torch.log_softmax(logits / config.temperature, -1)
            sampled = (logp + gumbel(torch.rand(B, m, cfg.vocab_size, generator=gen))).argmax(-1)
        confidence = logp.gather(-1, sampled[..., None])[..., 0]
        scale = config.choice_temperature * (1 - (k + 1) / K)
        if scale > 0:
            confidence = confidence + scale * gumbel(torch.rand(B, m, generator=gen))
        for b in range(B):
            chosen = confidence[b].topk(m - keep).indices
            tokens[b, masked[b, chosen]] = sampled[b, chosen]
    return tokens.numpy()


@pytest.mark.parametrize("schedule", ["baseline", "magnets", "decreasing"])
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
@pytest.mark.parametrize("mask_schedule", ["cosine", "arccos"])
def test_stride_one_reproduces_plain_maskgit(tiny_model, schedule, cfg_scale, mask_schedule):
    config = DecodeConfig(steps=8, schedule=schedule, cache_stride=1, cfg_scale=cfg_scale, seed=3,
                          mask_schedule=mask_schedule)
    result = generate(tiny_model, config, [1, 7, 2])
    assert all(r.action == "refresh" for r in result.records)
    np.testing.assert_array_equal(result.tokens, plain_maskgit(tiny_model, config, [1, 7, 2]))
    np.testing.assert_array_equal(fast_generate(tiny_model, config, [1, 7, 2]), result.tokens)


def test_temperature_zero_and_no_choice_noise_match_the_reference(tiny_model):
    config = DecodeConfig(steps=6, schedule="L*6", cache_stride=1, temperature=0, choice_temperature=0, seed=1)
    np.testing.assert_array_equal(generate(tiny_model, config, [2, 5]).tokens,
                                  plain_maskgit(tiny_model, config, [2, 5]))


@pytest.mark.parametrize("stride", [2, None])
@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_fast_path_runs_the_same_steps(tiny_model, stride, cfg_scale):
    config = DecodeConfig(steps=7, schedule="XS*2,M*2,L*3", cache_stride=stride, cfg_scale=cfg_scale, seed=4)
    for labels in ([1, 2, 3], [4, 5, 6]):  # the second run reuses the kept decoder's buffers
        np.testing.assert_array_equal(fast_generate(tiny_model, config, labels),
                                      generate(tiny_model, config, labels).tokens)


def test_reuse_is_exact_for_one_layer_and_recomputes_stale_positions():
    """With one layer a position's K/V depend on its own token only, so a cache refreshed once and updated
    at every position whose token changed reproduces the cache-free decode exactly."""
    torch.manual_seed(1)
    model = NestedTransformer(ModelConfig(vocab_size=32, seq_len=16, dim=64, heads=8, layers=1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8)
    config = DecodeConfig(steps=6, schedule="L*6", cache_stride=None, seed=2, cfg_scale=2.0)
    records = generate(model, config, [3, 4], measure_drift=True).records
    assert [r.action for r in records].count("reuse") == 5
    assert all(r.drift["max_abs_logit"] < 1e-4 for r in records if r.drift)
    exact = DecodeConfig(steps=6, schedule="L*6", cache_stride=1, seed=2, cfg_scale=2.0)
    np.testing.assert_array_equal(records[-1].tokens, generate(model, exact, [3, 4]).tokens)


@pytest.mark.parametrize("stride", [1, 2, 3, None])
@pytest.mark.parametrize("mask_schedule", ["cosine", "linear", "arccos"])
def test_committed_tokens_never_change_and_mask_counts_follow_gamma(tiny_model, stride, mask_schedule):
    cfg = tiny_model.cfg
    config = DecodeConfig(steps=6, schedule="magnets", cache_stride=stride, mask_schedule=mask_schedule)
    expected = masked_after(cfg.seq_len, 6, mask_schedule)
    previous = np.full((4, cfg.seq_len), cfg.mask_id)
    for r in decode(tiny_model, config, [0, 1, 2, 3]):
        was_committed = previous != cfg.mask_id
        np.testing.assert_array_equal(r.tokens[was_committed], previous[was_committed])
        assert ((r.tokens == cfg.mask_id).sum(1) == expected[r.step + 1]).all()
        assert (r.committed.sum(1) == r.n_committed).all()
        assert not r.committed[was_committed].any()
        previous = r.tokens
    assert (previous != cfg.mask_id).all()


def test_cache_refreshes_on_size_change_and_by_age(tiny_model):
    config = DecodeConfig(steps=10, schedule="XS*4,L*6", cache_stride=3)
    actions = [r.action for r in generate(tiny_model, config, [0]).records]
    assert actions == ["refresh", "reuse", "reuse", "refresh", "refresh", "reuse", "reuse", "refresh", "reuse",
                       "reuse"]
    never = DecodeConfig(steps=10, schedule="XS*4,L*6", cache_stride="never")
    assert [r.action for r in generate(tiny_model, never, [0]).records].count("refresh") == 2


def test_reuse_step_computes_only_masked_and_newly_committed(tiny_model):
    cfg = tiny_model.cfg
    records = generate(tiny_model, DecodeConfig(steps=6, schedule="L*6", cache_stride=None), [4, 5]).records
    for prev, r in zip(records, records[1:]):
        assert r.action == "reuse"
        assert r.n_computed == prev.n_logits  # masked before the previous step = masked now + just committed
        masked_before = prev.tokens == cfg.mask_id
        np.testing.assert_array_equal(r.computed, masked_before | prev.committed)


@pytest.mark.parametrize("cfg_scale", [1.0, 3.0])
@pytest.mark.parametrize("schedule", ["XS*2,S*2,M*2,L*2", "L*8"])
def test_analytic_flops_match_flop_counter(tiny_model, schedule, cfg_scale):
    config = DecodeConfig(steps=8, schedule=schedule, cache_stride=2, cfg_scale=cfg_scale)
    steps = decode(tiny_model, config, [1, 2, 3])
    seen = set()
    while True:
        with flop_counter() as counter:
            record = next(steps, None)
        if record is None:
            break
        seen.add((record.size, record.action))
        assert counter.get_total_flops() == 3 * record.total_flops, (record.step, record.size, record.action)
    assert {a for _, a in seen} == {"refresh", "reuse"}


@pytest.mark.parametrize("stride", [1, 3, None])
def test_planned_flops_equal_the_run(tiny_model, stride):
    for cfg_scale in (1.0, 2.0):
        config = DecodeConfig(steps=7, schedule="XS*2,M*2,L*3", cache_stride=stride, cfg_scale=cfg_scale)
        records = generate(tiny_model, config, [1, 2]).records
        assert planned_flops(tiny_model.cfg, config, guided=cfg_scale != 1.0) == [r.flops for r in records]


def test_baseline_flops_equal_plain_run(tiny_model):
    for cfg_scale in (1.0, 2.0):
        config = DecodeConfig(steps=8, schedule="baseline", cache_stride=1, cfg_scale=cfg_scale)
        result = generate(tiny_model, config, [0])
        assert result.total_flops == result.baseline_flops


def test_same_seed_same_output_and_each_knob_changes_it(tiny_model):
    base = dict(steps=8, schedule="magnets", cache_stride=2, cfg_scale=2.0, temperature=1.0,
                choice_temperature=2.0, seed=1, mask_schedule="cosine")
    ref = generate(tiny_model, DecodeConfig(**base), [3, 3]).tokens
    np.testing.assert_array_equal(ref, generate(tiny_model, DecodeConfig(**base), [3, 3]).tokens)
    changes = dict(schedule="baseline", cache_stride=1, cfg_scale=1.0, temperature=0.3, choice_temperature=0.0,
                   seed=2, mask_schedule="linear", steps=6)
    for knob, value in changes.items():
        if knob == "steps":
            other = DecodeConfig(**{**base, "steps": 6, "schedule": "XS*2,M*2,L*2"})
        else:
            other = DecodeConfig(**{**base, knob: value})
        assert not np.array_equal(ref, generate(tiny_model, other, [3, 3]).tokens), knob
    assert not np.array_equal(ref, generate(tiny_model, DecodeConfig(**base), [4, 4]).tokens), "class"


def test_prefix_tokens_are_kept_and_cached(tiny_model):
    cfg = tiny_model.cfg
    prefix = torch.randint(0, cfg.vocab_size, (2, 6))
    result = generate(tiny_model, DecodeConfig(steps=5, schedule="L*5", cache_stride=None), [1, 2], prefix=prefix)
    np.testing.assert_array_equal(result.tokens[:, :6], prefix.numpy())
    assert (result.tokens != cfg.mask_id).all()
    assert result.records[0].n_logits == cfg.seq_len - 6
    assert all(not r.computed[:, :6].any() for r in result.records[1:])
    assert (result.committed_by()[:, :6] == -1).all()


def test_drift_is_reported_on_reuse_steps_only(tiny_model):
    records = generate(tiny_model, DecodeConfig(steps=6, schedule="L*6", cache_stride=3), [0],
                       measure_drift=True).records
    for r in records:
        assert (r.drift is None) == (r.action == "refresh")
    reuse = [r.drift for r in records if r.drift]
    assert all(d["max_abs_logit"] >= d["mean_abs_logit"] >= 0 and 0 <= d["top1_agreement"] <= 1 for d in reuse)
    # Two layers: committed tokens' K/V drift as context fills in, so reuse differs from a fresh pass.
    assert all(d["mean_abs_logit"] > 1e-3 for d in reuse)


def test_unconditional_and_temperature_zero(tiny_model):
    result = generate(tiny_model, DecodeConfig(steps=4, schedule="L*4", cache_stride=1, temperature=0, choice_temperature=0,
                                               cfg_scale=3.0), [None, -1])
    np.testing.assert_array_equal(result.tokens[0], result.tokens[1])  # deterministic and unguided
    assert result.total_flops == result.baseline_flops  # no second pass when nothing is conditioned


@pytest.mark.parametrize("kwargs, needle", [
    (dict(schedule="XS*3,HUGE*9"), "HUGE"), (dict(schedule="XS*3,L*3"), "steps=12"), (dict(cache_stride=0), "cache_stride"),
    (dict(cache_stride="sometimes"), "cache_stride"), (dict(steps=0), "steps"), (dict(temperature=-1), "temperature"),
    (dict(choice_temperature=-0.5), "choice_temperature"), (dict(cfg_scale=float("nan")), "cfg_scale"),
    (dict(mask_schedule="square"), "mask_schedule"), (dict(schedule=""), "empty"),
])
def test_invalid_settings_name_the_setting(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        DecodeConfig(**kwargs)


def test_runtime_errors_name_the_setting(tiny_model):
    with pytest.raises(ValueError, match="steps=20"):
        next(decode(tiny_model, DecodeConfig(steps=20, schedule="L*20"), [0]))
    with pytest.raises(ValueError, match="class 10"):
        next(decode(tiny_model, DecodeConfig(steps=4, schedule="L*4"), [10]))
    with pytest.raises(ValueError, match="class -3"):
        next(decode(tiny_model, DecodeConfig(steps=4, schedule="L*4"), [-3]))
