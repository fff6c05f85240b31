"""Model: the nested sub-models with their size and cost, training curves, tokenizer reconstructions and the
model card."""
from __future__ import annotations

import numpy as np
import streamlit as st

from core.checkpoint import CheckpointError, load_checkpoint
from core.data import CLASS_NAMES, DatasetMissingError, load_fashion_mnist, to_model_input
from core.figures import training_figures
from core.flops import sizes_table
from core.pictures import image_tile
from core.train import read_metrics
from pages._widgets import device_caption, load_pipeline, page_setup

page_setup("Model")
st.title("Model")
pipe = load_pipeline()
if pipe is None:
    st.stop()
st.caption(device_caption(pipe))
cfg = pipe.model.cfg

st.subheader("Nested sub-models")
st.markdown(f"One set of weights ({cfg.layers} layers, width {cfg.dim}, {cfg.heads} heads, vocabulary "
            f"{cfg.vocab_size} + [MASK]); sub-model p uses the leading 1/p of every width. A full pass covers the "
            f"class token and all {cfg.seq_len} tokens with logits for every token.")
st.dataframe(sizes_table(pipe.model), hide_index=True)

st.subheader("Training curves")
metrics_path = pipe.assets / "training_metrics.jsonl"
if metrics_path.is_file():
    try:
        figs = training_figures(read_metrics(metrics_path))
    except (OSError, ValueError) as exc:
        st.warning(f"No training curves: {exc}. Restore the file with `git checkout -- assets/` (shipped assets) "
                   "or copy the run's metrics.jsonl here.")
    else:
        cols = st.columns(2)
        for i, fig in enumerate(figs):
            cols[i % 2].plotly_chart(fig, key=f"train-{i}")
        if not figs:
            st.info(f"{metrics_path} holds no readable rows yet.")
else:
    st.info(f"No training curves: {metrics_path} is not shipped with these assets.")


@st.cache_data(show_spinner="Reconstructing test images ...")
def reconstructions(_pipe, assets: str) -> tuple[np.ndarray, np.ndarray]:
    """The first test image of every class and its tokenizer round trip (assets keys the cache)."""
    images, labels = load_fashion_mnist("test")
    picks = np.array([int(np.argmax(labels == c)) for c in range(len(CLASS_NAMES))])
    originals = images[picks]
    tokens = _pipe.tokenizer.encode(to_model_input(originals).to(_pipe.device)).reshape(len(picks), -1)
    return originals, _pipe.images(tokens.cpu().numpy())


st.subheader("Tokenizer reconstructions")
try:
    originals, recon = reconstructions(pipe, str(pipe.assets))
    mse = float(np.mean((originals / 255.0 - recon / 255.0) ** 2))
    st.image(image_tile(originals, scale=3, cols=10), caption="Fashion-MNIST test images, one per class")
    st.image(image_tile(recon, scale=3, cols=10),
             caption=f"after encode -> {cfg.seq_len} tokens -> decode (MSE {mse:.4f} on these images)")
except DatasetMissingError as exc:
    st.info(f"Reconstructions need the Fashion-MNIST test split: {exc}")
except ValueError as exc:  # the idx files exist but are corrupt or truncated
    st.error(f"The Fashion-MNIST test split could not be read: {exc}")
try:
    tokenizer_extra = load_checkpoint(pipe.assets / "tokenizer")[2]
    if tokenizer_extra:
        st.json(tokenizer_extra, expanded=False)
except CheckpointError as exc:
    st.error(str(exc))

st.subheader("Model card")
card = pipe.assets / "MODEL_CARD.md"
if card.is_file():
    try:
        st.markdown(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        st.warning(f"{card} could not be read ({exc}); regenerate it with `python bench/model_card.py`. The "
                   "checkpoint's recorded training details follow.")
else:
    st.info(f"{card} is not written yet; the checkpoint's recorded training details follow.")
st.json(pipe.card, expanded=False)
