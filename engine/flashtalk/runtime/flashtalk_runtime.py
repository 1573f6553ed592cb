"""One engine's FlashTalk, from its options to chunks: ranks joined, precision chosen, models assembled.

On one rank it runs the streaming pipeline itself. Over several (torchrun), rank 0 leads: each of
its calls is mirrored on the followers, which spend their life in `follow()`. Memory errors
anywhere in a call come out as FlashTalkOutOfMemory; every other failure a person can act on as
FlashTalkUnavailable.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from engine.flashtalk.parallel.process_group import close_rank_world
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.pipeline.streaming import StreamingPipeline, StreamState
from engine.flashtalk.runtime.assembly import assemble_models, plan_memory
from engine.flashtalk.runtime.compile_cache import cache_counts, cache_report
from engine.flashtalk.runtime.memory_plan import HOST_TO_DEVICE_BYTES_PER_S
from engine.flashtalk.runtime.offload import host_to_device_bytes_per_s
from engine.flashtalk.runtime.out_of_memory import memory_errors_are_clear
from engine.flashtalk.runtime.precision import resolve_precision
from engine.flashtalk.runtime.ranks import CommandChannel, LeaderPipeline, follow, join_ranks
from engine.protocol.engine_options import BackendOptions

WARM_UP_PORTRAIT = 512  # pixels, square; resized to the session size like any portrait
WARM_UP_CHUNKS = 2  # chunk 0 (short, if the settings say so) starts from 1 motion latent, later chunks
# from 2 and full length: with --compile both chunks' graphs get built


class FlashTalkRuntime:
    def __init__(self, options: BackendOptions):
        device_type = torch.device(options.device).type if options.device else (
            "cuda" if torch.cuda.is_available() else "cpu")
        self.world = join_ranks(options.gpus, device_type, options.rank_timeout_s)  # None on one rank
        self.device = self.world.device if self.world else torch.device(options.device or device_type)
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.precision = resolve_precision(options.precision, self.device)
        self.compiled = options.compile
        self.memory_plan = plan_memory(options, self.precision, self.device,
                                       self.world.world_size if self.world else 1)  # before any weight is read
        t0 = time.perf_counter()
        models = assemble_models(options, self.precision, self.device, self.world, self.memory_plan)
        self.load_s = time.perf_counter() - t0
        streams = self.memory_plan.streamed or self.memory_plan.vae_and_audio_on_host
        rate = (host_to_device_bytes_per_s(self.device) if streams else None) or HOST_TO_DEVICE_BYTES_PER_S
        print(self.memory_plan.describe(rate, options.compile, on_cpu=self.device.type == "cpu"), file=sys.stderr,
              flush=True)
        self.pipeline = StreamingPipeline(models)
        self._leader: LeaderPipeline | None = None
        if self.world and self.world.is_leader:
            self._leader = LeaderPipeline(self.pipeline, CommandChannel(self.world))

    @property
    def is_leader(self) -> bool:
        """True on one rank and on rank 0; a follower's only call is `follow()`."""
        return self.world is None or self.world.is_leader

    # -- the leader's calls (mirrored on the followers) ------------------------------------------
    def open(self, portrait: np.ndarray | None, settings: StreamSettings,
             on_stage: Callable[[str], None] | None = None,
             output_hw: tuple[int, int] | None = None) -> StreamState:
        """portrait uint8 [H, W, 3] -> the session's state (CLIP, umT5 and VAE encodings); frames
        come out at `output_hw` (default: the settings' size). None: a timing state, no portrait."""
        with memory_errors_are_clear(self.device):
            return (self._leader or self.pipeline).prepare(portrait, settings, on_stage=on_stage,
                                                          output_hw=output_hw)

    def switch_profile(self, state: StreamState, width: int, height: int, steps: int) -> dict[str, float]:
        """The next chunks at another size / step count (output size unchanged), on every rank."""
        with memory_errors_are_clear(self.device):
            return (self._leader or self.pipeline).switch_profile(state, width, height, steps)

    def time_chunks(self, settings: StreamSettings, chunks: int) -> tuple[float, dict[str, float]]:
        """(wall seconds, stage ms) of the last of `chunks` silent full-length chunks on a timing
        state (a short first chunk, if the settings ask for one, would not time a regular chunk)."""
        silence = np.zeros(settings.window_samples, np.float32)
        state = self.open(None, replace(settings, first_chunk_frames=0))
        try:
            for _ in range(chunks):
                t0 = time.perf_counter()
                _, timings = self.generate(state, silence)
                wall = time.perf_counter() - t0
        finally:
            self.release(state)
        return wall, timings

    def generate(self, state: StreamState, window: np.ndarray,
                 on_stage: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """window float32 [settings.window_samples] -> (uint8 [new_frames, H, W, 3], stage -> ms)."""
        with memory_errors_are_clear(self.device):
            return (self._leader or self.pipeline).generate(state, window, on_stage=on_stage)

    def release(self, state: StreamState) -> None:
        """Forget a session's state (on every rank) and give its device memory back."""
        if self._leader is not None:
            self._leader.release(state)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def warm_up(self, settings: StreamSettings) -> float:
        """Seconds spent on two chunks of silence on a plain picture, at `settings`.

        The first session then meets a cached prompt (no umT5 pass), tuned kernels and, with
        --compile, every graph already built.
        """
        t0 = time.perf_counter()
        rows = np.linspace(64, 192, WARM_UP_PORTRAIT, dtype=np.uint8)
        portrait = np.repeat(np.repeat(rows[:, None, None], WARM_UP_PORTRAIT, 1), 3, 2)  # [H, W, 3]
        state = self.open(portrait, settings)
        try:
            silence = np.zeros(settings.window_samples, np.float32)
            for _ in range(WARM_UP_CHUNKS):
                self.generate(state, silence)
        finally:
            self.release(state)
        if self.compiled:
            print(f"compile cache: {cache_report()}", file=sys.stderr, flush=True)
        return time.perf_counter() - t0

    def memory_report(self) -> dict:
        return self.pipeline.models.memory_report()

    def start_report(self) -> dict:
        """What the engine's start built: with --compile, the graphs loaded from the compile cache
        and the ones compiled anew."""
        return {"compiled": self.compiled, **(cache_counts() if self.compiled else {})}

    # -- a follower's life -------------------------------------------------------------------------
    def follow(self) -> None:
        """Mirror the leader's calls until it shuts the engine down, then leave the job."""
        if self.is_leader:
            raise RuntimeError("only a follower rank follows the leader")
        follow(self.pipeline, CommandChannel(self.world))
        self.close()

    def close(self) -> None:
        if self._leader is not None:
            self._leader.shutdown()
            self._leader = None
        if self.world:
            close_rank_world()
            self.world = None
        self.pipeline = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
