"""Offload mechanics: networks that wait in host memory and visit the GPU only while they compute.

Every offloaded module has a home in host memory: one flat buffer holding all its parameters and
buffers (pinned where it is copied every step or chunk, so copies run asynchronously at full PCIe
speed). Between uses the module's tensors point at home; a visit copies the flat buffer into
device memory in one transfer and points the same tensor objects there (`tensor.data`), so module
code, hooks, state-dict keys and torch.compile graphs see an ordinary module on the device.

On a CPU engine the "device" copy is a second CPU buffer: every copy and re-pointing happens as
on a GPU and can be watched (HostHome.at_home), only no memory is saved.

- HostHome: one module's tensors at home, laid out in one flat buffer.
- Visitor: a whole module visits for the duration of a call (CLIP at prepare; the VAE and wav2vec2
  per call at level all); LayerVisits: each stage of umT5 visits for its own forward only.
- BlockStream: the streamed DiT blocks rotate through two device slots; while one computes, the
  next is copied on a side stream; events per slot order the copy after the slot's last reader
  and the reader after its copy, so the host never waits.
- OffloadPlacement: carries out a MemoryPlan on loaded FlashTalkModels (FlashTalkModels.visit
  asks it); BlockPlacer sends each DiT block to its place while the DiT loads.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch import nn

from engine.flashtalk.model.fp8_linear import quantize_block_linears
from engine.flashtalk.runtime.memory_plan import GIB, STREAM_SLOTS, MemoryPlan, MemoryPlanError

ALIGNMENT = 256  # bytes: every tensor in a home or slot starts at such an offset (vector loads, cuBLAS)
BANDWIDTH_PROBE_BYTES = 256 * 2 ** 20


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    """The module's parameters and buffers (the objects themselves), each once."""
    seen: dict[int, torch.Tensor] = {}
    for sub in module.modules():
        for tensor in (*sub._parameters.values(), *sub._buffers.values()):
            if tensor is not None:
                seen.setdefault(id(tensor), tensor)
    return list(seen.values())


def _view(flat: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """The bytes of `flat` at `offset` seen as a tensor shaped, typed and laid out like `like`
    (a channels_last convolution weight stays channels_last at home and on every visit)."""
    nbytes = like.numel() * like.element_size()
    typed = flat[offset:offset + nbytes].view(like.dtype)
    return typed.as_strided(like.shape, like.stride()) if _dense(like) else typed.view(like.shape)


def _dense(tensor: torch.Tensor) -> bool:
    """Whether `tensor` fills exactly numel() elements in some order of its dimensions (row-major,
    channels_last, any permutation), so its strides can be reused on a buffer of that size."""
    step = 1
    for size, stride in sorted(((s, st) for s, st in zip(tensor.shape, tensor.stride()) if s != 1),
                               key=lambda pair: pair[1]):
        if stride != step:
            return False
        step *= size
    return True


@dataclass
class _Slot:
    tensor: torch.Tensor  # the module's own Parameter or buffer object, re-pointed as it moves
    home: torch.Tensor  # its values in the home buffer
    offset: int


class HostHome:
    """One module's tensors in one flat host buffer; the module's tensors point here from now on."""

    def __init__(self, module: nn.Module, pin: bool):
        tensors = _tensors(module)
        offsets, end = [], 0
        for tensor in tensors:
            offsets.append(end)
            end = _aligned(end + tensor.numel() * tensor.element_size())
        self.nbytes = max(end, ALIGNMENT)
        self.flat = torch.empty(self.nbytes, dtype=torch.uint8, pin_memory=pin)
        self.slots = []
        for tensor, offset in zip(tensors, offsets, strict=True):
            home = _view(self.flat, offset, tensor)
            home.copy_(tensor.data)
            tensor.data = home
            self.slots.append(_Slot(tensor, home, offset))

    def copy_into(self, buffer: torch.Tensor, non_blocking: bool = False) -> None:
        """Copy every tensor's home values into `buffer` (uint8, >= nbytes) in one transfer."""
        buffer[:self.nbytes].copy_(self.flat, non_blocking=non_blocking)

    def point_to(self, buffer: torch.Tensor) -> None:
        for slot in self.slots:
            slot.tensor.data = _view(buffer, slot.offset, slot.home)

    def point_home(self) -> None:
        for slot in self.slots:
            slot.tensor.data = slot.home

    @property
    def at_home(self) -> bool:
        return all(slot.tensor.data_ptr() == slot.home.data_ptr() for slot in self.slots)


class Visitor:
    """A whole module that waits at home and is on `device` between arrive() and leave()."""

    def __init__(self, module: nn.Module, device: torch.device, pin: bool):
        self.home = HostHome(module, pin)
        self.device = device
        self.visits = 0
        self._here = False

    def arrive(self) -> None:
        if self._here:
            return
        buffer = torch.empty(self.home.nbytes, dtype=torch.uint8, device=self.device)
        self.home.copy_into(buffer, non_blocking=True)  # ordered before the module's kernels on this stream
        self.home.point_to(buffer)
        self._here = True
        self.visits += 1

    def leave(self) -> None:
        """Point home again; the device copy goes back to the allocator (stream-ordered reuse)."""
        if self._here:
            self.home.point_home()
            self._here = False

    @contextlib.contextmanager
    def visit(self):
        arrived = not self._here
        self.arrive()
        try:
            yield
        finally:
            if arrived:
                self.leave()


class LayerVisits:
    """Each stage of a module visits the device only for its own forward: one stage at a time."""

    def __init__(self, stages: list[nn.Module], device: torch.device):
        self.visitors = [Visitor(stage, device, pin=False) for stage in stages]
        for stage, visitor in zip(stages, self.visitors, strict=True):
            stage.register_forward_pre_hook(lambda _m, _a, v=visitor: v.arrive())
            stage.register_forward_hook(lambda _m, _a, _o, v=visitor: v.leave())

    def reset(self) -> None:
        """After an error inside a forward, nothing stays on the device."""
        for visitor in self.visitors:
            visitor.leave()

    @property
    def at_home(self) -> bool:
        return all(v.home.at_home for v in self.visitors)


class BlockStream:
    """Streamed DiT blocks through two device slots, the next copied while the current computes."""

    def __init__(self, blocks: list[nn.Module], homes: list[HostHome], device: torch.device):
        self.blocks, self.homes, self.device = blocks, homes, device
        self.slots = [torch.empty(max(h.nbytes for h in homes), dtype=torch.uint8, device=device)
                      for _ in range(STREAM_SLOTS)]
        self.holds: list[int | None] = [None] * STREAM_SLOTS  # block (position) each slot holds or receives
        self.attached: tuple[int, int] | None = None  # (position, slot) of the block computing now
        self.copies = 0
        cuda = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if cuda else None
        self.copied: list[torch.cuda.Event | None] = [None] * STREAM_SLOTS
        self.released: list[torch.cuda.Event | None] = [None] * STREAM_SLOTS
        for position, block in enumerate(blocks):
            block.register_forward_pre_hook(lambda _m, _a, p=position: self._before(p))
            block.register_forward_hook(lambda _m, _a, _o, p=position: self._after(p))

    def _before(self, position: int) -> None:
        self.reset()
        slot = self.holds.index(position) if position in self.holds else self._fetch(position, self._spare())
        if self.copy_stream is not None:
            torch.cuda.current_stream(self.device).wait_event(self.copied[slot])
        self.homes[position].point_to(self.slots[slot])
        self.attached = (position, slot)
        following = (position + 1) % len(self.blocks)
        if following not in self.holds:
            self._fetch(following, 1 - slot)

    def _after(self, position: int) -> None:
        _, slot = self.attached
        if self.copy_stream is not None:
            self.released[slot] = torch.cuda.current_stream(self.device).record_event()
        self.homes[position].point_home()
        self.attached = None

    def _spare(self) -> int:
        return 0 if self.attached is None or self.attached[1] == 1 else 1

    def _fetch(self, position: int, slot: int) -> int:
        """Copy block `position` into `slot` once the slot's last reader is done -> slot."""
        self.holds[slot] = position
        if self.copy_stream is None:
            self.homes[position].copy_into(self.slots[slot])
        else:
            with torch.cuda.stream(self.copy_stream):
                if self.released[slot] is not None:
                    self.copy_stream.wait_event(self.released[slot])
                self.homes[position].copy_into(self.slots[slot], non_blocking=True)
                self.copied[slot] = self.copy_stream.record_event()
        self.copies += 1
        return slot

    def reset(self) -> None:
        """A block left attached by an error inside its forward goes home (its slot stays valid)."""
        if self.attached is not None:
            self._after(self.attached[0])


class BlockPlacer:
    """Called for each DiT block as it is loaded on the device: FP8 there, then home if it streams."""

    def __init__(self, plan: MemoryPlan, device: torch.device, fp8: bool):
        self.streamed = set(plan.streamed)
        self.device, self.fp8 = device, fp8
        self.homes: dict[int, HostHome] = {}

    def __call__(self, index: int, block: nn.Module) -> None:
        if self.fp8:
            quantize_block_linears(block)  # on the device: the FP8 kernel where it runs
        if index in self.streamed:
            self.homes[index] = HostHome(block, pin=self.device.type == "cuda")


class OffloadPlacement:
    """Carries out a MemoryPlan on loaded FlashTalkModels; FlashTalkModels.visit(name) asks it."""

    def __init__(self, models, plan: MemoryPlan, placer: BlockPlacer):
        device, pin = models.device, models.device.type == "cuda"
        self.plan = plan
        text = models.text_encoder.model
        self.text = LayerVisits([text.token_embedding, *text.blocks, text.norm], device)
        self.visitors: dict[str, Visitor] = {}
        if plan.clip_on_host:
            self.visitors["clip"] = Visitor(models.clip, device, pin=False)
        if plan.vae_and_audio_on_host:
            self.visitors["vae"] = Visitor(models.vae.model, device, pin)
            self.visitors["audio_encoder"] = Visitor(models.audio_encoder.model, device, pin)
        self.blocks = None
        if plan.streamed:
            order = sorted(placer.homes)
            self.blocks = BlockStream([models.dit.blocks[i] for i in order], [placer.homes[i] for i in order],
                                      device)
            models.dit.register_forward_pre_hook(lambda *_: self.blocks.reset())

    @contextlib.contextmanager
    def visit(self, name: str):
        if name == "text_encoder":
            try:
                yield
            finally:
                self.text.reset()
            return
        visitor = self.visitors.get(name)
        with visitor.visit() if visitor is not None else contextlib.nullcontext():
            yield

    def at_home(self, name: str) -> bool:
        """Whether network `name` (or a DiT block, 'dit_block_N') points at its host home now."""
        if name == "text_encoder":
            return self.text.at_home
        if name.startswith("dit_block_"):
            index = int(name.removeprefix("dit_block_"))
            return self.blocks is not None and index in self.plan.streamed and \
                self.blocks.homes[self.plan.streamed.index(index)].at_home
        return name in self.visitors and self.visitors[name].home.at_home


def install_offload(models, plan: MemoryPlan, placer: BlockPlacer) -> None:
    """Send every network to where `plan` says (the DiT blocks are already placed by `placer`)."""
    if plan.level == "none":
        return
    models.placement = OffloadPlacement(models, plan, placer)
    if models.device.type == "cuda":
        torch.cuda.empty_cache()


def limit_device_memory(device: torch.device, plan: MemoryPlan) -> None:
    """Cap this process's allocations on `device` at the plan's budget (torch's memory fraction)."""
    if plan.budget is None or device.type != "cuda":
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    if plan.budget > total:
        raise MemoryPlanError(f"--gpu-memory {plan.budget / GIB:.1f} GiB is more than this GPU has "
                              f"({total / GIB:.1f} GiB): give at most {total / GIB:.0f}")
    torch.cuda.set_per_process_memory_fraction(plan.budget / total, index)


def host_to_device_bytes_per_s(device: torch.device) -> float | None:
    """Measured pinned host-to-device copy rate (a few 256 MiB copies); None on a CPU engine."""
    if device.type != "cuda":
        return None
    src = torch.empty(BANDWIDTH_PROBE_BYTES, dtype=torch.uint8, pin_memory=True)
    dst = torch.empty(BANDWIDTH_PROBE_BYTES, dtype=torch.uint8, device=device)
    dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(4):
        dst.copy_(src, non_blocking=True)
    torch.cuda.synchronize(device)
    return 4 * BANDWIDTH_PROBE_BYTES / (time.perf_counter() - t0)
