"""Shared, built once per test session: a tiny official-layout checkpoint, three short puppet clips
(real MP4s with speech) and their preprocessed cache at the toy geometry (64x64, 13-frame chunks)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.cli.synthetic_clips import SyntheticSpec, make_synthetic_clips  # noqa: E402
from engine.flashtalk.training.clip_source import list_clip_sources  # noqa: E402
from engine.flashtalk.training.condition_encoders import ConditionEncoders  # noqa: E402
from engine.flashtalk.training.latent_cache import LatentCache, build_cache  # noqa: E402
from engine.flashtalk.training.toy_run import TOY_SETTINGS  # noqa: E402
from engine.flashtalk.weights.tiny_checkpoint import make_tiny  # noqa: E402

CLIP_SECONDS = 2.2  # 55 frames: 6 chunks of 13 frames every 8 frames


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny ops: a second thread buys nothing and spins against other processes on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model_dir, wav2vec_dir) of a random tiny checkpoint in the official layout."""
    return make_tiny(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    make_synthetic_clips(folder, SyntheticSpec(3, 64, 64, CLIP_SECONDS), progress=False)
    return folder


@pytest.fixture(scope="session")
def encoders(tiny_model):
    return ConditionEncoders.from_model_dir(*tiny_model, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="session")
def cache(tmp_path_factory, clip_folder, encoders) -> LatentCache:
    root = tmp_path_factory.mktemp("cache")
    build_cache(list_clip_sources(clip_folder), encoders, TOY_SETTINGS, root, progress=False)
    return LatentCache(root)
