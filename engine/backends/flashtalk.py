"""The FlashTalk diffusion backend: our SoulX-FlashTalk pipeline behind the AvatarStream interface."""
from __future__ import annotations

import os
import re
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.backends.base import (
    AvatarStream,
    Backend,
    BackendError,
    BackendOptions,
    BackendUnavailable,
    ChunkResult,
    OutOfMemory,
    QualityProfile,
    SettingsError,
    StageCallback,
    StreamPlan,
)
from engine.backends.flashtalk_ranks import (
    CommandChannel,
    LeaderPipeline,
    follow,
    parallelize,
)
from engine.flashtalk.model.fp8_linear import quantize_dit_linears, scaled_mm_supported
from engine.flashtalk.model.vae_compile import compile_vae
from engine.flashtalk.parallel.process_group import (
    RankWorld,
    close_rank_world,
    init_rank_world,
    launched_by_torchrun,
)
from engine.flashtalk.pipeline.models import T5_TOKENIZER, FlashTalkModels
from engine.flashtalk.pipeline.profiles import ChunkCost, Rung, ladder
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.pipeline.streaming import StreamingPipeline, StreamState
from engine.flashtalk.weights import CheckpointError, validate_model_dir
from engine.protocol.messages import SessionSettings

WAV2VEC_FOLDER = "chinese-wav2vec2-base"
WARM_UP_PORTRAIT = 512  # pixels, square; resized to the session size like any portrait


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's RuntimeError and MemoryError all mean one thing.

    oneDNN (CPU convolutions) reports a failed scratchpad or JIT-code allocation only as "could
    not create a primitive": its implementation was already found (that step fails with "... a
    primitive descriptor ..."), so what is left to fail is memory.
    """
    if isinstance(exc, BackendError):
        return False
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "ALLOC_FAILED" in text
                                              or text.strip() == "could not create a primitive")


def _oom_error(exc: BaseException, device: torch.device) -> OutOfMemory:
    """One line with what to change. Drops the failed call's frames first, so the tensors they
    still hold are freed before the next session starts."""
    traceback.clear_frames(exc.__traceback__)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    size = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]?i?B|\d+ bytes)", str(exc))
    failed = f" ({_readable(size.group(1))} could not be allocated)" if size else ""
    return OutOfMemory(f"out of {'GPU' if device.type == 'cuda' else 'CPU'} memory{failed}: lower the "
                       "resolution (--size, or the session's width and height), use --precision fp8 "
                       "or --offload, or spread the model over more GPUs (--gpus N)")


def _readable(amount: str) -> str:
    """'12884901888 bytes' -> '12.0 GiB', '5242880 bytes' -> '5.0 MiB'; CUDA's '2.00 GiB' stays."""
    if not amount.endswith(" bytes"):
        return amount
    size = int(amount.split()[0])
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@contextmanager
def _memory_errors_are_clear(device: torch.device):
    """Out of memory anywhere inside becomes OutOfMemory (code out_of_memory), never an internal error."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not _is_out_of_memory(exc):
            raise
        raise _oom_error(exc, device) from None


class FlashTalkStream(AvatarStream):
    def __init__(self, pipeline: StreamingPipeline, state: StreamState, plan: StreamPlan):
        s = state.settings
        self.pipeline, self.state, self.plan = pipeline, state, plan
        self.height, self.width = state.output_hw
        self.chunk_frames = s.new_frames
        self.context_samples = s.window_samples
        self.prepare_ms = sum(state.prepare_ms.values())
        self.profile = plan.profile(Rung(s.width, s.height, s.steps).name)

    def generate(self, audio: np.ndarray, idle: bool = False) -> ChunkResult:
        with _memory_errors_are_clear(self.pipeline.device):
            frames, timings = self.pipeline.generate(self.state, audio)
        return ChunkResult(frames, timings)

    def use_profile(self, name: str) -> None:
        profile = self.plan.profile(name)
        with _memory_errors_are_clear(self.pipeline.device):
            self.pipeline.switch_profile(self.state, profile.width, profile.height, profile.steps)
        self.profile = profile

    def memory_report(self) -> dict:
        return self.pipeline.models.memory_report()

    def close(self) -> None:
        if isinstance(self.pipeline, LeaderPipeline):
            self.pipeline.release(self.state)
        self.state = None
        if self.pipeline.device.type == "cuda":
            torch.cuda.empty_cache()


# DiT/VAE weight dtype per --precision. fp32 is for reference checks (slow, twice the memory):
# bf16 rounding hides wiring bugs when comparing multi-rank against one rank.
PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.bfloat16, "fp32": torch.float32}


def default_precision(device: torch.device) -> str:
    """bf16 on a GPU (the reference's precision); fp32 on a CPU, where bf16 kernels run ~13x
    slower on processors without AVX512-BF16 (0.3 vs 3.9 fps for the tiny model at 128x128)."""
    return "fp32" if device.type == "cpu" else "bf16"


def _check_precision(precision: str, device: torch.device) -> None:
    """Refuse, before loading 38 GB, a precision this device cannot run fast."""
    if precision not in PRECISION_DTYPES:
        raise BackendUnavailable(f"unknown --precision {precision!r}: use one of {', '.join(PRECISION_DTYPES)}")
    if precision == "fp8" and device.type == "cuda" and not scaled_mm_supported(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise BackendUnavailable(f"--precision fp8 needs FP8 tensor cores (compute capability 8.9+: Ada, "
                                 f"Hopper); this GPU is {major}.{minor}: use --precision bf16")


class FlashTalkBackend(Backend):
    name = "flashtalk"

    def __init__(self, options: BackendOptions):
        self.options = options
        self.world = self._join_ranks(options)  # None on one GPU
        device = self.world.device if self.world else torch.device(
            options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        self.warms_up_by_default = device.type == "cuda"  # a CPU engine is for tests: no kernels to tune
        self.precision = options.precision or default_precision(device)
        _check_precision(self.precision, device)
        t0 = time.perf_counter()
        models = self._load(options, self.precision, device)
        if self.world:  # sequence-parallel DiT and band-parallel VAE over the ranks
            models = parallelize(models, self.world)
        models.dit.set_attention_backend(options.attention)
        if self.precision == "fp8":
            quantize_dit_linears(models.dit)  # before compile, so the graphs see the FP8 layers
        if options.compile:
            models.dit = torch.compile(models.dit)
            compile_vae(models.vae)  # per causal step: small graphs shared by every frame count
        self.load_s = time.perf_counter() - t0
        self.chunk_costs: dict[tuple[int, int, int, int], ChunkCost] = {}  # measured, per size (_cost_key)
        self.pipeline = StreamingPipeline(models)
        if self.world and self.world.is_leader:
            self.pipeline = LeaderPipeline(self.pipeline, CommandChannel(self.world))

    @staticmethod
    def _join_ranks(options: BackendOptions) -> RankWorld | None:
        """Join torchrun's job when this engine spans several ranks (--gpus N or WORLD_SIZE > 1)."""
        ranks = int(os.environ["WORLD_SIZE"]) if launched_by_torchrun() else 1
        if options.gpus == 1 and ranks == 1:
            return None
        if not launched_by_torchrun():
            raise BackendUnavailable(f"--gpus {options.gpus} needs one process per GPU: start it with "
                                     f"`flashtalk serve --gpus {options.gpus}` or torchrun --nproc-per-node "
                                     f"{options.gpus} -m engine serve ...")
        if options.gpus not in (1, ranks):
            raise BackendUnavailable(f"--gpus {options.gpus} but torchrun started {ranks} processes: "
                                     "make them equal")
        device_type = torch.device(options.device).type if options.device else (
            "cuda" if torch.cuda.is_available() else "cpu")
        return init_rank_world(device_type, options.rank_timeout_s)

    def follow(self) -> None:
        """A follower rank: mirror the leader's pipeline calls until it shuts the engine down."""
        follow(self.pipeline, CommandChannel(self.world))
        self.close()

    @staticmethod
    def _load(options: BackendOptions, precision: str, device: torch.device) -> FlashTalkModels:
        model_dir = Path(options.model_dir) if options.model_dir else None
        if model_dir is None:
            raise BackendUnavailable("the flashtalk backend needs --model DIR (the SoulX-FlashTalk-14B "
                                     "folder): get it with `flashtalk models download DIR`")
        wav2vec = Path(options.wav2vec_dir) if options.wav2vec_dir else model_dir.parent / WAV2VEC_FOLDER
        dtype = PRECISION_DTYPES[precision]
        if options.random_weights:
            if options.random_weights != "14b":
                raise BackendUnavailable("--random-weights supports only 14b (use `flashtalk models "
                                         "make-tiny` for a small model)")
            with _memory_errors_are_clear(device):
                return FlashTalkModels.random_14b(model_dir / T5_TOKENIZER, device, dtype)
        try:
            validate_model_dir(model_dir, wav2vec)
        except CheckpointError as exc:
            raise BackendUnavailable(str(exc)) from None
        try:
            with _memory_errors_are_clear(device):
                return FlashTalkModels.from_checkpoint(model_dir, wav2vec, device, dtype)
        except (FileNotFoundError, ValueError) as exc:  # damaged files the validation could not see
            raise BackendUnavailable(str(exc).splitlines()[0]) from None

    def warm_up(self, settings: SessionSettings | None = None) -> float:
        """Two chunks of silence on a plain picture, at the sessions' default size and prompt, then
        one measured chunk (two on a GPU) per size of its quality ladder.

        The first session then meets a cached prompt (no umT5 pass), tuned kernels and, with
        --compile, every graph already built, at every size the governor may switch to: chunk 0
        encodes 1 motion frame, later chunks 5, so one chunk is not enough. The measured chunk
        times let a live session choose its profile at once. On several ranks the leader's calls
        are mirrored as usual.
        """
        t0 = time.perf_counter()
        settings = settings or SessionSettings()
        rows = np.linspace(64, 192, WARM_UP_PORTRAIT, dtype=np.uint8)
        portrait = np.repeat(np.repeat(rows[:, None, None], WARM_UP_PORTRAIT, 1), 3, 2)  # [H, W, 3]
        stream = self.open_stream(portrait, settings)
        try:
            silence = np.zeros(stream.context_samples, np.float32)
            for _ in range(2):
                stream.generate(silence, idle=True)
        finally:
            stream.close()
        top = self._stream_settings(settings)
        for width, height in dict.fromkeys((p.width, p.height) for p in self._plan(top).profiles):
            self._measure_size(replace(top, width=width, height=height))
        return time.perf_counter() - t0

    def _stream_settings(self, settings: SessionSettings) -> StreamSettings:
        """The session's settings as the pipeline's: its top quality profile."""
        motion = settings.motion_frames or StreamSettings.motion_frames
        try:
            return StreamSettings().with_overrides(
                width=settings.width, height=settings.height, steps=settings.steps, seed=settings.seed,
                prompt=settings.prompt, motion_frames=settings.motion_frames,
                frame_num=settings.chunk_frames + motion if settings.chunk_frames else None,
                color_correction=settings.color_correction)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def _plan(self, top: StreamSettings) -> StreamPlan:
        rungs = ladder(top.width, top.height, top.steps, one_size=self.options.compile)
        return StreamPlan(top.new_frames, tuple(QualityProfile(r.name, r.width, r.height, r.steps) for r in rungs))

    def plan(self, settings: SessionSettings) -> StreamPlan:
        return self._plan(self._stream_settings(settings))

    def open_stream(self, portrait: np.ndarray, settings: SessionSettings,
                    on_stage: StageCallback | None = None, profile: str | None = None) -> FlashTalkStream:
        top = self._stream_settings(settings)
        plan = self._plan(top)
        start = plan.profile(profile) if profile else plan.profiles[0]
        first = replace(top, width=start.width, height=start.height, steps=start.steps)
        with _memory_errors_are_clear(self.pipeline.device):
            state = self.pipeline.prepare(portrait, first, on_stage=on_stage, output_hw=(top.height, top.width))
        return FlashTalkStream(self.pipeline, state, plan)

    # -- measured chunk times: what the governor predicts with --------------------------------
    @staticmethod
    def _cost_key(s: StreamSettings) -> tuple[int, int, int, int]:
        return s.width, s.height, s.frame_num, s.motion_frames

    def known_chunk_seconds(self, settings: SessionSettings) -> dict[str, float]:
        top = self._stream_settings(settings)
        known = {}
        for p in self._plan(top).profiles:
            cost = self.chunk_costs.get(self._cost_key(replace(top, width=p.width, height=p.height)))
            if cost is not None:
                known[p.name] = cost.seconds(p.steps)
        return known

    def measure_profile(self, portrait: np.ndarray, settings: SessionSettings, profile: str) -> dict[str, float]:
        """One measured chunk at the profile's size on a timing state (no portrait to encode); it
        predicts every step count at that size. -> all that is known for these settings."""
        top = self._stream_settings(settings)
        p = self._plan(top).profile(profile)
        self._measure_size(replace(top, width=p.width, height=p.height, steps=p.steps))
        return self.known_chunk_seconds(settings)

    def _measure_size(self, s: StreamSettings) -> ChunkCost:
        """A GPU's first chunk at a new size also picks kernels (and compiles, with --compile): the
        second one is timed there; a CPU has nothing to pick, one chunk does."""
        chunks = 1 if self.pipeline.device.type == "cpu" else 2
        silence = np.zeros(s.window_samples, np.float32)
        with _memory_errors_are_clear(self.pipeline.device):
            state = self.pipeline.prepare(None, s)
            try:
                for _ in range(chunks):
                    t0 = time.perf_counter()
                    _, timings = self.pipeline.generate(state, silence)
                    wall = time.perf_counter() - t0
            finally:
                if isinstance(self.pipeline, LeaderPipeline):
                    self.pipeline.release(state)
        cost = self.chunk_costs[self._cost_key(s)] = ChunkCost.from_timings(wall, timings)
        return cost

    def close(self) -> None:
        if isinstance(self.pipeline, LeaderPipeline):
            self.pipeline.shutdown()
        if self.world:
            close_rank_world()
            self.world = None
        self.pipeline = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
