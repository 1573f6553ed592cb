"""One FlashTalk engine over N ranks (GPUs): rank 0 leads, the other ranks follow its calls.

Rank 0 owns the socket and the session. Every pipeline call it makes (open a stream, generate a
chunk, close a stream) is first broadcast to the followers on the `commands` group, then run by
every rank at once (SPMD): each rank runs the DiT on its slice of the tokens and the VAE on its
band of the frames, and all ranks end each chunk with the same frames; only rank 0 sends them.

Failure: a follower that raises prints one line and exits non-zero; torchrun then stops every
rank, rank 0 included. A rank that hangs makes the others' collectives time out (RankWorld's
timeout) and exit the same way. A leader-side error marks the engine broken (ranks may be out of
step), so later sessions get a one-line "restart the engine" error instead of a hang.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.distributed as dist

from engine.flashtalk.parallel.process_group import RankWorld, init_rank_world, rank_environment_world_size
from engine.flashtalk.pipeline.settings import StreamSettings
from engine.flashtalk.pipeline.streaming import StreamingPipeline, StreamState
from engine.flashtalk.runtime.errors import FlashTalkUnavailable


def join_ranks(gpus: int, device_type: str, timeout_s: float) -> RankWorld | None:
    """Join torchrun's job when this engine spans several ranks (--gpus N, or torchrun's N > 1).

    None on one rank. The world size is torchrun's; --gpus must agree with it (or be left at 1).
    """
    ranks = rank_environment_world_size()  # None: not started by torchrun
    if gpus == 1 and ranks in (None, 1):
        return None
    if ranks is None:
        raise FlashTalkUnavailable(f"--gpus {gpus} needs one process per GPU: start it with "
                                   f"`flashtalk serve --gpus {gpus}` or torchrun --nproc-per-node {gpus} "
                                   "-m engine serve ...")
    if gpus not in (1, ranks):
        raise FlashTalkUnavailable(f"--gpus {gpus} but torchrun started {ranks} processes: make them equal")
    return init_rank_world(device_type, timeout_s)


@dataclass(frozen=True)
class Command:
    """One leader call, as every follower receives it."""

    name: str  # "open" | "generate" | "switch" | "close" | "shutdown"
    stream: int = -1
    payload: Any = None  # open: (portrait uint8 [H, W, 3] or None, StreamSettings); generate: float32
    # window; switch: (width, height, steps)


class CommandChannel:
    """Leader -> followers messages over the gloo `commands` group (pickled, small)."""

    def __init__(self, world: RankWorld):
        self.world = world

    def send(self, command: Command) -> None:
        dist.broadcast_object_list([command], src=0, group=self.world.commands)

    def receive(self) -> Command:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=self.world.commands)
        return box[0]


class LeaderPipeline:
    """StreamingPipeline's prepare/generate on rank 0, mirrored on every follower."""

    def __init__(self, pipeline: StreamingPipeline, channel: CommandChannel):
        self.pipeline, self.channel = pipeline, channel
        self.models, self.device, self.dtype = pipeline.models, pipeline.device, pipeline.dtype
        self._lock = threading.Lock()  # one command (and its collectives) at a time
        self._streams: dict[int, int] = {}  # id(state) -> stream number
        self._next_stream = 0
        self._broken: str | None = None

    def prepare(self, portrait: np.ndarray | None, settings: StreamSettings,
                on_stage: Callable[[str], None] | None = None,
                output_hw: tuple[int, int] | None = None) -> StreamState:
        with self._lock:
            number = self._next_stream
            self._next_stream += 1
            # Stages and the output size matter on the leader only: followers send no frames.
            prepare = functools.partial(self.pipeline.prepare, on_stage=on_stage, output_hw=output_hw)
            state = self._run(Command("open", number, (portrait, settings)), prepare, portrait, settings)
            self._streams[id(state)] = number
            return state

    def generate(self, state: StreamState, window: np.ndarray,
                 on_stage: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict[str, float]]:
        with self._lock:
            command = Command("generate", self._streams[id(state)], np.asarray(window, np.float32))
            generate = functools.partial(self.pipeline.generate, on_stage=on_stage)
            return self._run(command, generate, state, window)

    def switch_profile(self, state: StreamState, width: int, height: int, steps: int) -> dict[str, float]:
        with self._lock:
            command = Command("switch", self._streams[id(state)], (width, height, steps))
            return self._run(command, self.pipeline.switch_profile, state, width, height, steps)

    def release(self, state: StreamState) -> None:
        """Followers drop the stream's state too."""
        with self._lock:
            number = self._streams.pop(id(state), None)
            if number is not None and self._broken is None:
                self.channel.send(Command("close", number))

    def shutdown(self) -> None:
        """End the followers' loops (best effort: a dead follower is already gone)."""
        with self._lock:
            if self._broken is None:
                try:
                    self.channel.send(Command("shutdown"))
                except RuntimeError:
                    pass

    def _run(self, command: Command, call, *args):
        if self._broken is not None:
            raise FlashTalkUnavailable(f"a GPU rank failed earlier ({self._broken}); restart the engine")
        self.channel.send(command)
        try:
            return call(*args)
        except BaseException as exc:
            self._broken = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise


def follow(pipeline: StreamingPipeline, channel: CommandChannel) -> None:
    """A follower's life: run each command the leader broadcasts until it says shutdown."""
    states: dict[int, StreamState] = {}
    while True:
        command = channel.receive()
        if command.name == "open":
            states[command.stream] = pipeline.prepare(*command.payload)
        elif command.name == "generate":
            pipeline.generate(states[command.stream], command.payload, frames_out=False)  # rank 0 sends
        elif command.name == "switch":
            pipeline.switch_profile(states[command.stream], *command.payload)
        elif command.name == "close":
            states.pop(command.stream, None)
        elif command.name == "shutdown":
            return
        else:
            raise RuntimeError(f"unknown engine command {command.name!r}")
