"""The training rollout is the streaming sampler: same draws, same steps, same motion latents."""
from __future__ import annotations

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from avkit.portrait_image import load_portrait  # noqa: E402
from engine.flashtalk.pipeline.audio_window import chunk_audio_embedding  # noqa: E402
from engine.flashtalk.pipeline.models import FlashTalkModels  # noqa: E402
from engine.flashtalk.pipeline.sampler_step import denoise_step  # noqa: E402
from engine.flashtalk.pipeline.streaming import StreamingPipeline  # noqa: E402
from engine.flashtalk.training.chunk_batch import ChunkConditions, dit_velocity  # noqa: E402
from engine.flashtalk.training.rollout import GeneratorSchedule, generate_chunk, motion_from_chunk  # noqa: E402
from engine.flashtalk.training.toy_run import TOY_SETTINGS  # noqa: E402
from tests.conftest import ASSETS  # noqa: E402

SETTINGS = TOY_SETTINGS.with_overrides(seed=3)


@pytest.fixture(scope="module")
def streaming(tiny_model):
    models = FlashTalkModels.from_checkpoint(*tiny_model, torch.device("cpu"), torch.float32)
    models.dit.set_attention_backend(None)
    pipeline = StreamingPipeline(models, stage_timings=False)
    state = pipeline.prepare(load_portrait(ASSETS / "portrait.png"), SETTINGS)
    return pipeline, state


def _audio(models: FlashTalkModels, speech: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    window = speech[:SETTINGS.window_samples]
    audio = chunk_audio_embedding(models.audio_encoder, models.normalize_loudness, window, SETTINGS.sample_rate,
                                  SETTINGS.fps, SETTINGS.frame_num)
    return window, audio


def test_generator_chunk_equals_the_streaming_sampler(streaming, speech):
    pipeline, state = streaming
    _, audio = _audio(pipeline.models, speech)
    state.generator.manual_seed(SETTINGS.seed)
    expected = pipeline.denoise(state, audio)  # [16, F, h, w]
    cond = ChunkConditions(state.cond, state.context, state.clip, audio)
    velocity = functools.partial(dit_velocity, pipeline.models.dit)
    shape = (SETTINGS.latent_frames, *SETTINGS.latent_hw)
    sample, latent = generate_chunk(velocity, cond, state.motion, shape, GeneratorSchedule.for_settings(
        SETTINGS, torch.device("cpu")), torch.Generator().manual_seed(SETTINGS.seed))
    assert sample is None and latent.shape == (1, *expected.shape)
    torch.testing.assert_close(latent[0], expected, rtol=0, atol=0)
    _, other = generate_chunk(velocity, cond, state.motion, shape, GeneratorSchedule.for_settings(
        SETTINGS, torch.device("cpu")), torch.Generator().manual_seed(SETTINGS.seed + 1))
    assert not torch.equal(other, latent)


def test_next_motion_latents_are_those_the_streaming_pipeline_carries(streaming, speech):
    pipeline, state = streaming
    window, audio = _audio(pipeline.models, speech)
    state.generator.manual_seed(SETTINGS.seed)
    before, motion_before = state.generator.get_state(), state.motion
    pipeline.generate(state, window, frames_out=False)
    carried = pipeline.motion_latents(state)
    state.generator.set_state(before)
    state.motion = motion_before
    latent = pipeline.denoise(state, audio)
    motion = motion_from_chunk(pipeline.models.vae, latent[None], state.reference, SETTINGS)
    assert motion.shape == carried.shape == (1, 16, 2, *SETTINGS.latent_hw)
    torch.testing.assert_close(motion, carried, rtol=0, atol=0)


def test_exit_step_alone_carries_autograd(streaming, speech):
    pipeline, state = streaming
    _, audio = _audio(pipeline.models, speech)
    dit = pipeline.models.dit.requires_grad_(True)
    try:
        cond = ChunkConditions(state.cond, state.context, state.clip, audio)
        shape = (SETTINGS.latent_frames, *SETTINGS.latent_hw)
        schedule = GeneratorSchedule.for_settings(SETTINGS, torch.device("cpu"))
        sample, latent = generate_chunk(functools.partial(dit_velocity, dit), cond, state.motion, shape, schedule,
                                        torch.Generator().manual_seed(0), exit_step=2)
        assert sample.requires_grad and not latent.requires_grad
        sample[:, :, 2:].sum().backward()
        assert dit.head.head.weight.grad is not None and dit.head.head.weight.grad.abs().sum() > 0
    finally:
        dit.requires_grad_(False).zero_grad(set_to_none=True)


def test_the_step_with_the_models_own_noise_estimate_is_the_euler_step():
    g = torch.Generator().manual_seed(0)
    latent, velocity = torch.randn(2, 16, 4, 8, 8, generator=g), torch.randn(2, 16, 4, 8, 8, generator=g)
    motion = torch.randn(2, 16, 2, 8, 8, generator=g)
    sigma, sigma_next = torch.tensor(0.8), torch.tensor(0.55)
    _, stepped = denoise_step(latent, velocity, sigma, sigma_next, latent + (1 - sigma) * velocity, motion)
    euler = latent + (sigma_next - sigma) * velocity
    torch.testing.assert_close(stepped[:, :, 2:], euler[:, :, 2:])
    assert torch.equal(stepped[:, :, :2], motion)
