import gzip

import numpy as np
import pytest
import torch

from core.__main__ import main
from core.data import (CLASS_NAMES, DatasetMissingError, crop28, load_fashion_mnist,
                       procedural_dataset, to_model_input)


def test_missing_folder_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DatasetMissingError) as info:
        load_fashion_mnist("train", tmp_path / "nowhere")
    msg = str(info.value)
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "FASHION_MNIST_DIR" in msg and "--data-dir" in msg
    assert isinstance(info.value, FileNotFoundError)


def _write_idx(folder, split, images, labels):
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}[split]
    n = len(images)
    with gzip.open(folder / names[0], "wb") as fh:
        fh.write(np.array([2051, n, 28, 28], ">u4").tobytes() + images.tobytes())
    with gzip.open(folder / names[1], "wb") as fh:
        fh.write(np.array([2049, n], ">u4").tobytes() + labels.astype(np.uint8).tobytes())
    return folder / names[0]


def test_env_var_root_and_round_trip(tmp_path, monkeypatch):
    images, labels = procedural_dataset(12)
    _write_idx(tmp_path, "test", images, labels)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    got_x, got_y = load_fashion_mnist("test")
    assert got_x.dtype == np.uint8 and got_y.dtype == np.int64
    np.testing.assert_array_equal(got_x, images)
    np.testing.assert_array_equal(got_y, labels)


def test_corrupt_file_is_named(tmp_path):
    images, labels = procedural_dataset(4)
    img_path = _write_idx(tmp_path, "train", images, labels)
    with gzip.open(img_path, "wb") as fh:
        fh.write(np.array([1234, 4, 28, 28], ">u4").tobytes())
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*magic"):
        load_fashion_mnist("train", tmp_path)


def test_procedural_dataset_is_deterministic_and_labelled():
    x, y = procedural_dataset(30, seed=3)
    assert x.shape == (30, 28, 28) and x.dtype == np.uint8
    assert y.shape == (30,) and set(y.tolist()) == set(range(len(CLASS_NAMES)))
    assert all(img.max() > 0 for img in x)
    x2, _ = procedural_dataset(30, seed=3)
    np.testing.assert_array_equal(x, x2)


def test_pad_crop_round_trip():
    x, _ = procedural_dataset(5)
    t = to_model_input(x)
    assert t.shape == (5, 1, 32, 32) and t.dtype == torch.float32
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    assert float(t[:, :, :2].abs().sum()) == 0 and float(t[:, :, :, -2:].abs().sum()) == 0
    np.testing.assert_array_equal(crop28(t), x)


def test_cli_reports_missing_data_in_one_line(tmp_path, capsys):
    assert main(["train-tokenizer", "--data-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "dataset-fashion-mnist" in err


def test_cli_reports_bad_config_field(tmp_path, capsys):
    assert main(["train-tokenizer", "--codebook-size", "1", "--data-dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "codebook_size" in err and "Traceback" not in err


def test_cli_bad_argument_is_one_line(capsys):
    assert main(["train-tokenizer", "--epochs", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_shuffled_batches_cover_each_epoch_once():
    import torch

    from core.data import shuffled_batches

    batches = list(shuffled_batches(10, 3, 7, torch.Generator().manual_seed(0)))
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    for epoch in (batches[0:3], batches[3:6]):  # 3 full batches per epoch, the ragged 10th item dropped
        assert len(set(torch.cat(epoch).tolist())) == 9
