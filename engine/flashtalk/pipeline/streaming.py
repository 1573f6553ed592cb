"""The FlashTalk streaming sampler: prepare a portrait once, then generate chunk after chunk forever.

Per chunk (defaults): audio condition from the rolling 8 s window -> 4 denoising steps on
[16, 9, 96, 56] latents with the motion latents re-imposed after every step -> VAE decode of 33
frames -> colour correction against the portrait -> VAE re-encode of the last 5 frames as the next
chunk's motion latents -> emit frames 5..32 (28 new frames). No state but the motion latents and
the seeded noise generator crosses chunks.

The denoising loop never waits for the host: the per-step timesteps and sigmas are device tensors
made once per session, so with `stage_timings=False` a chunk is queued without a synchronisation
until its frames are copied out (per-stage timings need one synchronisation per stage).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.flashtalk.pipeline.audio_window import chunk_audio_embedding
from engine.flashtalk.pipeline.color_correction import match_colors
from engine.flashtalk.pipeline.models import FlashTalkModels
from engine.flashtalk.pipeline.portrait_prep import reference_tensor, to_uint8_frames
from engine.flashtalk.pipeline.sampler_step import denoise_step, impose_motion, sampler_tensors
from engine.flashtalk.pipeline.settings import VAE_STRIDE, StreamSettings
from engine.flashtalk.pipeline.timesteps import sampling_timesteps


@dataclass
class StreamState:
    """Everything one session carries from chunk to chunk."""

    settings: StreamSettings
    context: torch.Tensor  # [1, 512, text_dim] T5 tokens (zero-padded to 512)
    clip: torch.Tensor  # [1, 257, clip_dim]
    cond: torch.Tensor  # [1, 20, F_lat, h, w] = mask(4) || VAE(ref + zero frames)(16)
    reference: torch.Tensor  # [1, 3, 1, H, W] in [-1, 1], the colour-correction target
    motion: torch.Tensor  # [1, 16, m, h, w] motion latents (1 at start, then 2)
    generator: torch.Generator
    timesteps: list[float]
    t_steps: list[torch.Tensor]  # per step float32 [1] on the device: the DiT's t
    sigmas: torch.Tensor  # float32 [steps + 1] on the device: timesteps / 1000
    chunks: int = 0
    prepare_ms: dict = field(default_factory=dict)


class StageTimer:
    """Wall-clock per stage, synchronising the device so each stage owns its own time.

    Disabled, it records nothing and never synchronises (a whole chunk can be timed from outside).
    """

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.enabled = enabled
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if not self.enabled:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        yield
        self._sync()
        self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class StreamingPipeline:
    """stage_timings=False: generate() returns no per-stage times and adds no synchronisation."""

    def __init__(self, models: FlashTalkModels, defaults: StreamSettings = StreamSettings(),
                 stage_timings: bool = True):
        self.models = models
        self.defaults = defaults
        self.device = models.device
        self.dtype = models.dtype
        self.stage_timings = stage_timings

    # -- session setup ---------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, portrait: np.ndarray, settings: StreamSettings) -> StreamState:
        """Encode the portrait and prompt once per session (CLIP, T5, VAE)."""
        m, s = self.models, settings
        timer = StageTimer(self.device)
        with timer("text_encoder"):
            context = m.encode_text(s.prompt)  # [1, 512, text_dim]
        ref = reference_tensor(portrait, s.height, s.width, self.device, self.dtype)
        with timer("clip"):
            clip = m.encode_image(ref[:, :, 0])  # [1, 257, clip_dim]
        with timer("vae_cond"):
            zeros = torch.zeros(1, 3, s.frame_num - 1, s.height, s.width, device=self.device, dtype=self.dtype)
            y = m.vae_encode(torch.cat([ref, zeros], dim=2))  # [1, 16, F_lat, h, w]
            motion = m.vae_encode(ref)  # [1, 16, 1, h, w]
        cond = torch.cat([self._first_frame_mask(s), y], dim=1)  # [1, 20, F_lat, h, w]
        generator = torch.Generator(device=self.device).manual_seed(s.seed)
        timesteps = sampling_timesteps(s.steps, s.shift)
        t_steps, sigmas = sampler_tensors(timesteps, self.device)
        return StreamState(settings=s, context=context, clip=clip, cond=cond, reference=ref,
                           motion=motion, generator=generator, timesteps=timesteps, t_steps=t_steps,
                           sigmas=sigmas, prepare_ms=timer.ms)

    def _first_frame_mask(self, s: StreamSettings) -> torch.Tensor:
        """[1, 4, F_lat, h, w]: ones on latent frame 0 (the reference), zeros elsewhere."""
        lh, lw = s.latent_hw
        mask = torch.zeros(1, VAE_STRIDE[0], s.latent_frames, lh, lw, device=self.device, dtype=self.dtype)
        mask[:, :, 0] = 1
        return mask

    # -- one chunk -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, state: StreamState, window: np.ndarray,
                 frames_out: bool = True) -> tuple[np.ndarray | None, dict[str, float]]:
        """window: float32 [audio_cache_s * sr] ending at the chunk's last sample.

        -> (uint8 [new_frames, H, W, 3], stage -> ms). frames_out=False (follower ranks, whose
        frames nobody sends) skips the device-to-host copy and returns None for the frames.
        """
        m, s = self.models, state.settings
        timer = StageTimer(self.device, self.stage_timings)
        with timer("audio_features"):
            audio = chunk_audio_embedding(m.audio_encoder, m.normalize_loudness, window,
                                          s.sample_rate, s.fps, s.frame_num)  # [1, 33, 5, L, D]
            audio = audio.to(self.device, self.dtype)
        latent = self.denoise(state, audio, timer)
        with timer("vae_decode"):
            video = m.vae_decode(latent[None])  # [1, 3, 33, H, W]
        with timer("color_correction"):
            video = match_colors(video, state.reference, s.color_correction)
        with timer("vae_encode"):
            state.motion = m.vae_encode(video[:, :, -s.motion_frames:])  # [1, 16, 2, h, w]
        frames = None
        if frames_out:
            with timer("host_copy"):
                frames = to_uint8_frames(video[0, :, s.motion_frames:])
        state.chunks += 1
        return frames, timer.ms

    @torch.no_grad()
    def denoise(self, state: StreamState, audio: torch.Tensor, timer: StageTimer | None = None) -> torch.Tensor:
        """Re-noising few-step sampler; motion latents overwrite the leading frames every step.

        audio [1, frames, window, layers, dim] -> latents [16, F_lat, h, w] in the model dtype.
        As in the reference, the first noise is drawn in the model dtype and every update after
        the DiT runs in float32 (the DiT returns float32), re-noising with float32 draws from the
        same device generator - the draws, not only their values, must match to reproduce it.
        """
        s, timer = state.settings, timer or StageTimer(self.device, enabled=False)
        lh, lw = s.latent_hw
        latent = torch.randn(16, s.latent_frames, lh, lw, dtype=self.dtype, device=self.device,
                             generator=state.generator)  # [16, F_lat, h, w]
        latent = impose_motion(latent, state.motion[0])
        for i, t in enumerate(state.t_steps):
            with timer(f"dit_step_{i}"):
                velocity = self.models.dit_forward(latent, t, state, audio)  # f32 [16, F_lat, h, w]
                noise = torch.randn(velocity.shape, dtype=velocity.dtype, device=self.device,
                                    generator=state.generator)
                _, latent = denoise_step(latent, velocity, state.sigmas[i], state.sigmas[i + 1], noise,
                                         state.motion[0])
        return latent.to(self.dtype)
