"""Fixtures for tests of the flashtalk backend on the CPU, made once per test module: a tiny
official-layout checkpoint, the backend on it, and the repository's portrait. (A module that
damages or reshapes its checkpoint makes its own.)"""
from __future__ import annotations

import pytest

from engine.backends.base import BackendOptions
from engine.flashtalk.weights.checkpoint_layout import MODEL_FOLDER
from tests.conftest import ASSETS


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    root = tmp_path_factory.mktemp("tiny")
    make_tiny(root, seed=0)
    return root


@pytest.fixture(scope="module")
def backend(tiny_root):
    from engine.backends.flashtalk import FlashTalkBackend
    return FlashTalkBackend(BackendOptions(model_dir=tiny_root / MODEL_FOLDER, device="cpu"))


@pytest.fixture(scope="module")
def portrait():
    from avkit.portrait_image import load_portrait
    return load_portrait(ASSETS / "portrait.png")
