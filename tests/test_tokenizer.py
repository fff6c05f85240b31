import numpy as np
import pytest
import torch

from core.data import procedural_dataset, to_model_input
from core.tokenizer import (TOKENS_PER_IMAGE, VQConfig, VQTokenizer, load_tokenizer,
                            tokenize_dataset, train_tokenizer)

TINY = dict(codebook_size=16, embed_dim=8, channels=8, num_res_blocks=1)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="codebook_size"):
        VQConfig(codebook_size=1)
    with pytest.raises(ValueError, match="ema_decay"):
        VQConfig(ema_decay=1.5)


def test_encode_decode_shapes():
    torch.manual_seed(0)
    model = VQTokenizer(VQConfig(**TINY)).eval()
    x = to_model_input(procedural_dataset(3)[0])
    tokens = model.encode(x)
    assert tokens.shape == (3, TOKENS_PER_IMAGE) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 16
    out = model.decode(tokens)
    assert out.shape == (3, 1, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match="tokens"):
        model.decode(torch.zeros(2, 10, dtype=torch.long))


def test_few_steps_reduce_loss_and_save_load(tmp_path):
    images, _ = procedural_dataset(256, seed=1)
    model, metrics = train_tokenizer(VQConfig(**TINY), images, test_images=images[:32], epochs=4,
                                     batch_size=32, lr=3e-3, out_stem=tmp_path / "tok", log=lambda m: None)
    hist = metrics["loss_history"]
    assert len(hist) == 32
    assert np.mean(hist[-4:]) < 0.7 * np.mean(hist[:4])
    assert 0 < metrics["test_codebook_usage"] <= 1 and metrics["test_psnr_db"] > 0
    loaded = load_tokenizer(tmp_path / "tok")
    assert not loaded.training
    tokens = tokenize_dataset(loaded, images[:10], batch_size=4)
    assert torch.equal(tokens, model.encode(to_model_input(images[:10])))
