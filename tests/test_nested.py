import pytest
import torch

from core.cache import KVCache
from core.nested import ModelConfig, NestedTransformer, embed_submodel, extract_submodel


@pytest.mark.parametrize("size", ["XS", "S", "M", "L"])
def test_submodel_equals_standalone_copy(tiny_model, size):
    cfg = tiny_model.cfg
    tokens = torch.randint(0, cfg.vocab_size + 1, (3, cfg.seq_len))
    labels = torch.tensor([0, 5, cfg.null_class])
    small = extract_submodel(tiny_model, size).eval()
    assert small.cfg.dim == cfg.dim // cfg.sizes[size]
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(tokens, labels, size), small(tokens, labels), rtol=1e-5, atol=1e-5)


def test_a_model_embedded_in_a_twice_wider_one_is_its_sub_model_unchanged(tiny_model):
    """Widening: the model's sub-model of divisor q is the wider model's of divisor 2q, logits and all, and the
    wider model's weights outside those slices keep their initialisation."""
    cfg = tiny_model.cfg
    torch.manual_seed(1)
    wide = NestedTransformer(ModelConfig(**{**cfg.to_dict(), "dim": 2 * cfg.dim, "heads": 2 * cfg.heads})).eval()
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    assert embed_submodel(wide, tiny_model.state_dict()) == "M"
    tokens = torch.randint(0, cfg.vocab_size + 1, (3, cfg.seq_len))
    labels = torch.tensor([0, 5, cfg.null_class])
    with torch.no_grad():
        for narrow, wider in (("L", "M"), ("M", "S"), ("S", "XS")):
            torch.testing.assert_close(wide(tokens, labels, wider), tiny_model(tokens, labels, narrow))
        assert not torch.allclose(wide(tokens, labels, "L"), wide(tokens, labels, "M"), atol=1e-3)
    for name, t in wide.state_dict().items():
        outside = torch.ones_like(t, dtype=torch.bool)
        outside[tuple(slice(0, n) for n in tiny_model.state_dict()[name].shape)] = False
        assert torch.equal(t[outside], before[name][outside]), name


def test_embedding_refuses_weights_of_no_sub_model(tiny_model):
    cfg = tiny_model.cfg
    shallower = NestedTransformer(ModelConfig(**{**cfg.to_dict(), "dim": cfg.dim // 2, "heads": cfg.heads // 2,
                                                 "layers": 1, "sizes": {"L": 1}}))
    with pytest.raises(ValueError, match="layout of sub-model M.*blocks.1"):
        embed_submodel(tiny_model, shallower.state_dict())
    odd = NestedTransformer(ModelConfig(**{**cfg.to_dict(), "dim": 24, "heads": 3, "sizes": {"L": 1}}))
    with pytest.raises(ValueError, match="width 24 are no sub-model"):
        embed_submodel(tiny_model, odd.state_dict())
    with pytest.raises(ValueError, match="not a nested transformer"):
        embed_submodel(tiny_model, {"w": torch.ones(2)})


def test_sizes_share_weights_and_differ(tiny_model):
    cfg = tiny_model.cfg
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len))
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        outs = {s: tiny_model(tokens, labels, s) for s in cfg.sizes}
    assert all(o.shape == (2, cfg.seq_len, cfg.vocab_size) for o in outs.values())
    assert not torch.allclose(outs["XS"], outs["L"])
    params = [tiny_model.num_params(s) for s in ("XS", "S", "M", "L")]
    assert params == sorted(params) and params[-1] == sum(p.numel() for p in tiny_model.parameters())


def test_partial_pass_against_fresh_cache_matches_full_pass(tiny_model):
    """With a cache written from the same tokens, recomputing a subset reproduces the full pass there."""
    cfg = tiny_model.cfg
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.seq_len))
    labels = torch.tensor([3, 4])
    pos = torch.tensor([[0, 5, 9], [2, 3, 15]])
    with torch.no_grad():
        cache = KVCache(cfg.layers)
        full = tiny_model(tokens, labels, "M", cache=cache)
        part = tiny_model(tokens.gather(1, pos), labels, "M", positions=pos, cache=cache)
    torch.testing.assert_close(part, full.gather(1, pos[..., None].expand(-1, -1, cfg.vocab_size)),
                               rtol=1e-5, atol=1e-5)


def test_partial_pass_needs_cache(tiny_model):
    with pytest.raises(ValueError, match="KV cache"):
        tiny_model(torch.zeros(1, 2, dtype=torch.long), torch.tensor([0]), positions=torch.tensor([[0, 1]]))


@pytest.mark.parametrize("kwargs, field", [
    (dict(dim=60, heads=8), "dim"), (dict(heads=6, dim=60), "sizes"), (dict(layers=0), "layers"),
    (dict(sizes={"S": 2}), "sizes"),
])
def test_model_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_unknown_size_is_named(tiny_model):
    with pytest.raises(ValueError, match="'XXL'"):
        tiny_model(torch.zeros(1, 16, dtype=torch.long), torch.tensor([0]), "XXL")


def test_default_config_nests_four_sizes():
    cfg = ModelConfig()
    assert (cfg.layers, cfg.dim, cfg.heads, cfg.seq_len, cfg.vocab_size) == (8, 256, 8, 64, 512)
    assert [cfg.width(s) for s in ("XS", "S", "M", "L")] == [32, 64, 128, 256]


def _logits(model, tokens, labels):
    with torch.inference_mode():  # where the weight views are reused
        return {s: model(tokens, labels, s) for s in model.cfg.sizes}


def test_weight_views_follow_the_weights(tiny_model):
    """Outside autograd each sub-model reads views of the parameters made once. A model that loads other weights
    in place, or whose parameters move to new memory, must compute with the new weights, never the cached ones."""
    cfg = tiny_model.cfg
    tokens = torch.randint(0, cfg.vocab_size + 1, (2, cfg.seq_len))
    labels = torch.tensor([1, cfg.null_class])
    other = NestedTransformer(cfg).eval()
    _logits(tiny_model, tokens, labels)  # makes the views
    expected = _logits(other, tokens, labels)

    model = NestedTransformer(cfg).eval()
    model.load_state_dict(tiny_model.state_dict())
    _logits(model, tokens, labels)
    model.load_state_dict(other.state_dict())  # copies into the same memory
    for size, out in _logits(model, tokens, labels).items():
        torch.testing.assert_close(out, expected[size])

    model.double()  # new memory for every parameter, the same Parameter objects
    for size, out in _logits(model, tokens.clone(), labels).items():
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, expected[size].double(), rtol=1e-5, atol=1e-5)


def test_training_slices_the_parameters_themselves(tiny_model):
    """With autograd on, a sub-model's gradient reaches the full parameters, and only their leading block."""
    model = NestedTransformer(tiny_model.cfg)
    model.load_state_dict(tiny_model.state_dict())
    with torch.inference_mode():
        model(torch.zeros(1, model.cfg.seq_len, dtype=torch.long), torch.tensor([0]), "S")  # views exist
    tokens = torch.randint(0, model.cfg.vocab_size, (2, model.cfg.seq_len))
    model(tokens, torch.tensor([0, 1]), "S").sum().backward()
    grad = model.blocks[0].fc1.weight.grad
    w = model.cfg.width("S")
    assert grad is not None and grad[: 4 * w, :w].abs().sum() > 0
    assert grad[4 * w:].abs().sum() == 0 and grad[:, w:].abs().sum() == 0


def test_inference_computes_exactly_what_training_computes(tiny_model):
    """Outside autograd a sub-model reads its weights through views made once (leading_block), not fresh slices of
    the parameters; the logits must stay bit for bit those of the autograd forward, for every size and for a partial
    pass on a cache."""
    cfg = tiny_model.cfg
    tokens = torch.randint(0, cfg.vocab_size + 1, (3, cfg.seq_len))
    labels = torch.tensor([1, 2, cfg.null_class])
    fast = _logits(tiny_model, tokens, labels)
    for size in cfg.sizes:
        assert torch.equal(fast[size], tiny_model(tokens, labels, size).detach()), size
    pos = torch.tensor([[0, 3, 5]] * 3)
    outs = []
    for grad in (False, True):
        cache = KVCache(cfg.layers)
        with torch.set_grad_enabled(grad):
            tiny_model(tokens, labels, "M", cache=cache)
            outs.append(tiny_model(tokens.gather(1, pos), labels, "M", positions=pos, cache=cache).detach())
    assert torch.equal(*outs)
