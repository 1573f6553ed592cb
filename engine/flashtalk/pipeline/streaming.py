"""The FlashTalk streaming sampler: prepare a portrait once, then generate chunk after chunk forever.

Per chunk (defaults): audio condition from the rolling 8 s window -> 4 denoising steps on
[16, 9, 96, 56] latents with the motion latents re-imposed after every step -> VAE decode of 33
frames -> colour correction against the portrait -> VAE re-encode of the last 5 frames as the next
chunk's motion latents -> emit frames 5..32 (28 new frames). No state but the motion latents and
the seeded noise generator crosses chunks. A live session's first chunk may be shorter (e.g. 9
frames, 3 latent frames: 4 new frames), so its frames come sooner; its conditions are the leading
latent frames of the full chunk's (the causal VAE encodes ref + 8 zero frames to exactly those).

Quality profiles (pipeline/profiles.py) switch between chunks: fewer steps take new timesteps; a
smaller size takes the portrait's conditions at that size (encoded once, then kept) and the last
motion frames resized and re-encoded. Frames always leave at the session's output size.

The denoising loop never waits for the host: the per-step timesteps and sigmas are device tensors
made once per session, so with `stage_timings=False` a chunk is queued without a synchronisation
until its frames are copied out (per-stage timings need one synchronisation per stage).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.flashtalk.pipeline.audio_window import chunk_audio_embedding
from engine.flashtalk.pipeline.color_correction import match_colors
from engine.flashtalk.pipeline.frame_resize import resize_video
from engine.flashtalk.pipeline.models import FlashTalkModels
from engine.flashtalk.pipeline.portrait_prep import reference_tensor, to_uint8_frames
from engine.flashtalk.pipeline.sampler_step import denoise_step, impose_motion, sampler_tensors
from engine.flashtalk.pipeline.settings import VAE_STRIDE, StreamSettings
from engine.flashtalk.pipeline.timesteps import sampling_timesteps
from engine.protocol.stages import Stage, dit_step


@dataclass
class SizeCondition:
    """The portrait's conditions at one size."""

    clip: torch.Tensor  # [1, 257, clip_dim]
    cond: torch.Tensor  # [1, 20, F_lat, h, w] = mask(4) || VAE(ref + zero frames)(16)
    reference: torch.Tensor  # [1, 3, 1, H, W] in [-1, 1], the colour-correction target
    first_motion: torch.Tensor  # [1, 16, 1, h, w]: the portrait's latent, chunk 0's motion


@dataclass
class StreamState:
    """Everything one session carries from chunk to chunk."""

    settings: StreamSettings  # the size and steps chunks are made with now (the quality profile)
    output_hw: tuple[int, int]  # (height, width) of the frames it emits, whatever `settings` says
    portrait: np.ndarray | None  # uint8 [H, W, 3], kept to condition other sizes; None: a timing state
    context: torch.Tensor  # [1, 512, text_dim] T5 tokens (zero-padded to 512)
    clip: torch.Tensor  # [1, 257, clip_dim]
    cond: torch.Tensor  # [1, 20, F_lat, h, w] = mask(4) || VAE(ref + zero frames)(16)
    reference: torch.Tensor  # [1, 3, 1, H, W] in [-1, 1], the colour-correction target
    motion: torch.Tensor | None  # [1, 16, m, h, w] motion latents (1 at start, then 2); None: the
    # last chunk's motion_pixels wait to be encoded by the next chunk (its frames did not wait)
    generator: torch.Generator
    timesteps: list[float]
    t_steps: list[torch.Tensor]  # per step float32 [1] on the device: the DiT's t
    sigmas: torch.Tensor  # float32 [steps + 1] on the device: timesteps / 1000
    conditions: dict[tuple[int, int], SizeCondition] = field(default_factory=dict)  # (width, height) ->
    motion_pixels: torch.Tensor | None = None  # [1, 3, motion_frames, H, W] of the last chunk
    chunks: int = 0
    prepare_ms: dict = field(default_factory=dict)


class StageTimer:
    """Wall-clock per stage, synchronising the device so each stage owns its own time.

    Disabled, it records nothing and never synchronises (a whole chunk can be timed from outside).
    `on_start(name)` hears of each stage as it begins (progress for a waiting client).
    """

    def __init__(self, device: torch.device, enabled: bool = True,
                 on_start: Callable[[str], None] | None = None):
        self.device = device
        self.enabled = enabled
        self.on_start = on_start
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if self.on_start is not None:
            self.on_start(name)
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

    def __init__(self, models: FlashTalkModels, stage_timings: bool = True):
        self.models = models
        self.device = models.device
        self.dtype = models.dtype
        self.stage_timings = stage_timings

    # -- session setup ---------------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, portrait: np.ndarray | None, settings: StreamSettings,
                on_stage: Callable[[str], None] | None = None,
                output_hw: tuple[int, int] | None = None) -> StreamState:
        """Encode the portrait and prompt once per session (CLIP, T5, VAE).

        `output_hw`: the (height, width) frames leave at (default: the settings' size). With no
        portrait it makes a timing state: zero conditions, no VAE encode, since a chunk costs the
        same whatever its conditions hold (the engine measures its profiles with it).
        """
        m, s = self.models, settings
        timer = StageTimer(self.device, on_start=on_stage)
        with timer(Stage.TEXT_ENCODER):
            context = m.encode_text(s.prompt)  # [1, 512, text_dim]
        condition = self._condition(portrait, s, timer)
        generator = torch.Generator(device=self.device).manual_seed(s.seed)
        timesteps = sampling_timesteps(s.steps, s.shift)
        t_steps, sigmas = sampler_tensors(timesteps, self.device)
        return StreamState(settings=s, output_hw=output_hw or (s.height, s.width), portrait=portrait,
                           context=context, clip=condition.clip, cond=condition.cond,
                           reference=condition.reference, motion=condition.first_motion, generator=generator,
                           timesteps=timesteps, t_steps=t_steps, sigmas=sigmas,
                           conditions={(s.width, s.height): condition}, prepare_ms=timer.ms)

    def _condition(self, portrait: np.ndarray | None, s: StreamSettings, timer: StageTimer) -> SizeCondition:
        m = self.models
        lh, lw = s.latent_hw
        if portrait is None:
            ref = torch.zeros(1, 3, 1, s.height, s.width, device=self.device, dtype=self.dtype)
        else:
            ref = reference_tensor(portrait, s.height, s.width, self.device, self.dtype)
        with timer(Stage.CLIP):
            clip = m.encode_image(ref[:, :, 0])  # [1, 257, clip_dim]
        with timer(Stage.VAE_COND):
            if portrait is None:
                y = torch.zeros(1, 16, s.latent_frames, lh, lw, device=self.device, dtype=self.dtype)
                motion = torch.zeros(1, 16, 1, lh, lw, device=self.device, dtype=self.dtype)
            else:
                zeros = torch.zeros(1, 3, s.frame_num - 1, s.height, s.width, device=self.device, dtype=self.dtype)
                y = m.vae_encode(torch.cat([ref, zeros], dim=2))  # [1, 16, F_lat, h, w]
                motion = y[:, :, :1].clone()  # [1, 16, 1, h, w]: causal, so exactly VAE(ref) alone
        cond = torch.cat([self._first_frame_mask(s), y], dim=1)  # [1, 20, F_lat, h, w]
        return SizeCondition(clip, cond, ref, motion)

    @torch.no_grad()
    def switch_profile(self, state: StreamState, width: int, height: int, steps: int,
                       on_stage: Callable[[str], None] | None = None) -> dict[str, float]:
        """Make the next chunks at another size and/or step count; -> stage -> ms it took.

        A new size takes the portrait's conditions at that size (encoded on the first visit) and
        the last motion frames, resized and re-encoded, so motion goes on where it was.
        """
        s = state.settings
        new = replace(s, width=width, height=height, steps=steps).validate()
        timer = StageTimer(self.device, on_start=on_stage)
        if (width, height) != (s.width, s.height):
            if (width, height) not in state.conditions:
                state.conditions[(width, height)] = self._condition(state.portrait, new, timer)
            c = state.conditions[(width, height)]
            state.clip, state.cond, state.reference = c.clip, c.cond, c.reference
            if state.motion_pixels is None:  # no chunk yet: start from the portrait, as prepare does
                state.motion = c.first_motion
            else:
                with timer(Stage.VAE_ENCODE):
                    state.motion = self.models.vae_encode(resize_video(state.motion_pixels, height, width))
        if steps != s.steps:
            state.timesteps = sampling_timesteps(steps, s.shift)
            state.t_steps, state.sigmas = sampler_tensors(state.timesteps, self.device)
        state.settings = new
        return timer.ms

    def _first_frame_mask(self, s: StreamSettings) -> torch.Tensor:
        """[1, 4, F_lat, h, w]: ones on latent frame 0 (the reference), zeros elsewhere."""
        lh, lw = s.latent_hw
        mask = torch.zeros(1, VAE_STRIDE[0], s.latent_frames, lh, lw, device=self.device, dtype=self.dtype)
        mask[:, :, 0] = 1
        return mask

    # -- one chunk -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, state: StreamState, window: np.ndarray, frames_out: bool = True,
                 on_stage: Callable[[str], None] | None = None) -> tuple[np.ndarray | None, dict[str, float]]:
        """window: float32 [audio_cache_s * sr] ending at the chunk's last sample.

        -> (uint8 [new_frames, H, W, 3], stage -> ms). frames_out=False (follower ranks, whose
        frames nobody sends) skips the device-to-host copy and returns None for the frames.
        `on_stage` hears of each stage (each denoising step too) as it starts. The session's first
        chunk may be short (settings.first_chunk_frames): it runs on the leading latent frames of
        the same conditions, and its last motion_frames frames become the next chunk's motion
        latents as any chunk's do.
        """
        m, s = self.models, state.settings.for_chunk(state.chunks)
        timer = StageTimer(self.device, self.stage_timings, on_start=on_stage)
        with timer(Stage.AUDIO_FEATURES), m.visit("audio_encoder"):
            audio = chunk_audio_embedding(m.audio_encoder, m.normalize_loudness, window,
                                          s.sample_rate, s.fps, s.frame_num)  # [1, F, 5, L, D]
            audio = audio.to(self.device, self.dtype)
        latent = self.denoise(state, audio, timer, latent_frames=s.latent_frames)
        with timer(Stage.VAE_DECODE):
            video = m.vae_decode(latent[None])  # [1, 3, F, H, W]
        with timer(Stage.COLOR_CORRECTION):
            video = match_colors(video, state.reference, s.color_correction)
        # The next chunk's motion latents are encoded when it starts (denoise), so these frames
        # leave without waiting for that encode.
        state.motion_pixels = video[:, :, -s.motion_frames:].clone()  # [1, 3, 5, H, W]: kept for a size change
        state.motion = None
        frames = None
        if frames_out:
            with timer(Stage.HOST_COPY):  # at the session's output size, whatever the profile's
                frames = to_uint8_frames(resize_video(video[:, :, s.motion_frames:], *state.output_hw)[0])
        state.chunks += 1
        return frames, timer.ms

    @torch.no_grad()
    def motion_latents(self, state: StreamState, timer: StageTimer | None = None) -> torch.Tensor:
        """[1, 16, m, h, w]: the latents the next chunk starts from. The last chunk's motion frames
        are encoded here, on first use, so that chunk's frames never waited for the encode."""
        if state.motion is None:
            with (timer or StageTimer(self.device, enabled=False))(Stage.VAE_ENCODE):
                state.motion = self.models.vae_encode(state.motion_pixels)  # [1, 16, 2, h, w]
        return state.motion

    @torch.no_grad()
    def denoise(self, state: StreamState, audio: torch.Tensor, timer: StageTimer | None = None,
                latent_frames: int | None = None) -> torch.Tensor:
        """Re-noising few-step sampler; motion latents overwrite the leading frames every step.

        audio [1, frames, window, layers, dim] -> latents [16, F_lat, h, w] in the model dtype
        (F_lat: `latent_frames`, default the settings' full chunk). As in the reference, the first
        noise is drawn in the model dtype and every update after the DiT runs in float32 (the DiT
        returns float32), re-noising with float32 draws from the same device generator - the
        draws, not only their values, must match to reproduce it.
        """
        s, timer = state.settings, timer or StageTimer(self.device, enabled=False)
        motion = self.motion_latents(state, timer)[0]  # [16, m, h, w]
        lh, lw = s.latent_hw
        latent = torch.randn(16, latent_frames or s.latent_frames, lh, lw, dtype=self.dtype, device=self.device,
                             generator=state.generator)  # [16, F_lat, h, w]
        latent = impose_motion(latent, motion)
        for i, t in enumerate(state.t_steps):
            with timer(dit_step(i)):
                velocity = self.models.dit_forward(latent, t, state, audio)  # f32 [16, F_lat, h, w]
                noise = torch.randn(velocity.shape, dtype=velocity.dtype, device=self.device,
                                    generator=state.generator)
                _, latent = denoise_step(latent, velocity, state.sigmas[i], state.sigmas[i + 1], noise,
                                         motion)
        return latent.to(self.dtype)
