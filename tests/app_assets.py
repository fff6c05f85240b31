"""Shared guard for the app tests: they run the shipped model (assets/, or MAGNETS_ASSETS)."""
from __future__ import annotations

import os

import pytest

from core.pipeline import ASSETS


def require_assets() -> None:
    """Skip the calling test module when the transformer checkpoint is absent; under CI=true fail instead,
    because a CI run without the shipped model would otherwise pass by testing nothing."""
    weights = ASSETS / "transformer.safetensors"
    if weights.is_file():
        return
    message = f"{weights} is missing (train it, or point MAGNETS_ASSETS at a folder with a transformer)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
