"""The stages the engine times in every chunk (the keys of `Frames.timings`) and the graph group of each.

The emitters (the puppet, the flashtalk pipeline, the session) name their stages with `Stage` and
`dit_step`; the studio's per-stage graph draws one line per `StageGroup` and files each key with
`stage_group`. Both sides read this one list, so the graph shows exactly what the engine sends.
"""
from __future__ import annotations

from enum import StrEnum


class StageGroup(StrEnum):
    """One line of the studio's per-stage graph, in legend order."""

    AUDIO_FEATURES = "audio features"
    DENOISE = "denoise"
    VAE = "VAE"
    RENDER = "render"  # the puppet's warp of the portrait and its mouth drawing
    POST = "post"  # colour correction, copying the frames to the host
    TRANSPORT = "transport"  # not an engine stage: engine send -> studio receive, measured by the studio


class Stage(StrEnum):
    # every chunk
    AUDIO_FEATURES = "audio_features"
    VAE_DECODE = "vae_decode"
    COLOR_CORRECTION = "color_correction"
    VAE_ENCODE = "vae_encode"
    HOST_COPY = "host_copy"
    WARP = "warp"
    MOUTH_INTERIOR = "mouth_interior"
    CHUNK_TOTAL = "chunk_total"  # the whole generate() call, timed by the session around the backend
    # once per session, while it prepares (flashtalk)
    TEXT_ENCODER = "text_encoder"
    CLIP = "clip"
    VAE_COND = "vae_cond"
    MEASURING_SPEED = "measuring_speed"  # a live session times the quality profiles it may need


DIT_STEP_PREFIX = "dit_step_"

GROUP_OF: dict[Stage, StageGroup] = {
    Stage.AUDIO_FEATURES: StageGroup.AUDIO_FEATURES,
    Stage.VAE_DECODE: StageGroup.VAE,
    Stage.VAE_ENCODE: StageGroup.VAE,
    Stage.COLOR_CORRECTION: StageGroup.POST,
    Stage.HOST_COPY: StageGroup.POST,
    Stage.WARP: StageGroup.RENDER,
    Stage.MOUTH_INTERIOR: StageGroup.RENDER,
}


def dit_step(i: int) -> str:
    """The stage of denoising step i (0-based): dit_step_0, dit_step_1, ..."""
    return f"{DIT_STEP_PREFIX}{i}"


def is_dit_step(name: str) -> bool:
    return name.startswith(DIT_STEP_PREFIX) and name[len(DIT_STEP_PREFIX):].isdigit()


def stage_group(name: str) -> StageGroup | None:
    """The graph group of a timings key; None for the chunk total, preparation stages and unknown keys."""
    if is_dit_step(name):
        return StageGroup.DENOISE
    try:
        return GROUP_OF.get(Stage(name))
    except ValueError:
        return None


def is_known_stage(name: str) -> bool:
    """Whether `name` is a stage of this list (a DiT step included)."""
    if is_dit_step(name):
        return True
    try:
        Stage(name)
    except ValueError:
        return False
    return True
