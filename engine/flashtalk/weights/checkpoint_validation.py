"""Validation of the official checkpoint folders before anything touches a GPU.

`validate_model_dir` reads only headers and memory-maps (safetensors headers, `torch.load(mmap=True)`),
so checking the 51 GB folder takes seconds, and reports the first problem as one line naming the
file and the fix. The folders' file names are checkpoint_layout's.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.flashtalk.model import clip, t5, vae
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.model.state_dict_check import describe_key_mismatch
from engine.flashtalk.weights.checkpoint_layout import (
    CLIP_CHECKPOINT,
    CLIP_TOKENIZER,
    DIT_CONFIG,
    DIT_INDEX,
    DIT_SINGLE_FILE,
    MODEL_FOLDER,
    MODEL_REPO,
    T5_CHECKPOINT,
    T5_TOKENIZER,
    VAE_CHECKPOINT,
    WAV2VEC_CONFIG,
    WAV2VEC_PREPROCESSOR,
    WAV2VEC_REPO,
    WAV2VEC_WEIGHTS,
)

REDOWNLOAD = "download it again (`flashtalk models download`)"

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
DIT_DTYPES = ("BF16", "F16", "F32")  # the official shards are BF16; any float is cast at load


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; str() is one line naming the file and the fix."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name, e.g. "BF16"
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor names -> dtype/shape from a safetensors header, checking the file is complete.

    Every entry is checked as the format defines it (a map with a known dtype, a shape of
    non-negative integers, offsets [begin, end] with the bytes that dtype and shape need) and the
    tensors must tile the data buffer exactly: no overlap, no gap, nothing beyond the file.
    """
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > 100_000_000:
                raise CheckpointError(f"{path}: not a safetensors file (header size {header_len}) - {REDOWNLOAD}")
            header = json.loads(f.read(header_len))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a readable safetensors file (damaged header) - {REDOWNLOAD}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror}) - check the file's permissions") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a map of tensors - {REDOWNLOAD}")
    header.pop("__metadata__", None)
    tensors, spans = {}, []
    for name, entry in header.items():
        dtype, shape, begin, end = _header_entry(path, name, entry)
        expected = DTYPE_BYTES[dtype] * math.prod(shape)
        if end - begin != expected:
            raise CheckpointError(f"{path}: tensor {name} has {end - begin} bytes for {dtype}{list(shape)} "
                                  f"- the file is damaged, {REDOWNLOAD}")
        tensors[name] = TensorInfo(dtype, shape)
        spans.append((begin, end, name))
    data_end = 0
    for begin, end, name in sorted(spans):
        if begin != data_end:
            what = "overlaps the tensor before it" if begin < data_end else "leaves a gap before it"
            raise CheckpointError(f"{path}: tensor {name} {what} (offset {begin}, expected {data_end}) "
                                  f"- the file is damaged, {REDOWNLOAD}")
        data_end = end
    size, needed = path.stat().st_size, 8 + header_len + data_end
    if size != needed:
        state = "truncated" if size < needed else "longer than its header says"
        raise CheckpointError(f"{path}: file is {state} ({size} of {needed} bytes) - {REDOWNLOAD}")
    return tensors


def _header_entry(path: Path, name: str, entry) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry, or CheckpointError saying what is wrong."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: tensor {name!r} {what} in the header - the file is damaged, {REDOWNLOAD}")

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not isinstance(entry, dict):
        raise bad("is not a map")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise bad(f"has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(whole(v) for v in shape):
        raise bad("has no shape of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(whole(v) for v in offsets)
            and offsets[0] <= offsets[1]):
        raise bad("has no data_offsets [begin, end] with 0 <= begin <= end")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing ({what}) - {REDOWNLOAD}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({str(exc).splitlines()[0]}) - {REDOWNLOAD}") from None


def dit_config(model_dir: Path) -> dict:
    """The DiT's config.json as FlashTalkDiT would read it."""
    _read_json(Path(model_dir) / DIT_CONFIG, "the DiT config")
    return dict(FlashTalkDiT.load_config(model_dir))


def dit_shard_files(model_dir: Path) -> dict[Path, set[str]]:
    """Shard file -> tensor names the index says it holds (one file without an index: empty set)."""
    model_dir = Path(model_dir)
    index_path = model_dir / DIT_INDEX
    if not index_path.is_file():
        single = model_dir / DIT_SINGLE_FILE
        if single.is_file():
            return {single: set()}
        raise CheckpointError(f"{index_path}: missing (no DiT weights in {model_dir}) - {REDOWNLOAD}")
    weight_map = _read_json(index_path, "the DiT shard index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_path}: has no weight_map - {REDOWNLOAD}")
    shards: dict[Path, set[str]] = {}
    for key, filename in weight_map.items():
        shards.setdefault(model_dir / filename, set()).add(key)
    for shard in shards:
        if not shard.is_file():
            raise CheckpointError(f"{shard}: missing (named by {DIT_INDEX}) - {REDOWNLOAD}")
    return shards


def meta_dit(model_dir: Path) -> FlashTalkDiT:
    """The DiT that `model_dir/config.json` describes, on the meta device (no memory)."""
    config = dit_config(model_dir)
    try:
        with torch.device("meta"):
            return FlashTalkDiT.from_config(config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{Path(model_dir) / DIT_CONFIG}: {str(exc).splitlines()[0]} - {REDOWNLOAD}") from None


def validate_dit(model_dir: Path) -> dict:
    """Check config, shard index, shard headers, keys, shapes and dtypes; return the full config.

    The headers are read before the model is built: a config.json asking for more blocks than the
    shards hold (a damaged or foreign file) is refused at once instead of building a model that
    takes minutes to describe.
    """
    model_dir = Path(model_dir)
    dit_config(model_dir)  # config.json first: an empty or foreign folder is named by its first missing file
    headers: dict[Path, dict[str, TensorInfo]] = {}
    for shard, indexed in dit_shard_files(model_dir).items():
        header = headers[shard] = read_safetensors_header(shard)
        if indexed and set(header) != indexed:
            stray = sorted(indexed ^ set(header))
            raise CheckpointError(f"{shard}: holds different tensors than {DIT_INDEX} says (e.g. {stray[0]}) "
                                  f"- {REDOWNLOAD}")
    _check_config_blocks(model_dir, {name for header in headers.values() for name in header})
    model = meta_dit(model_dir)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found: dict[str, TensorInfo] = {}
    for shard, header in headers.items():
        for name, info in header.items():
            _check_dit_tensor(shard, name, info, expected)
        found.update(header)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise CheckpointError(f"{model_dir}: {len(missing)} DiT tensors missing from the shards "
                              f"(e.g. {missing[0]}) - {REDOWNLOAD}")
    return dict(model.config)


def _check_config_blocks(model_dir: Path, names: set[str]) -> None:
    """config.json's num_layers must be the number of transformer blocks the shards hold."""
    path = Path(model_dir) / DIT_CONFIG
    layers = dit_config(model_dir).get("num_layers", FlashTalkDiT.official_config()["num_layers"])
    held = {int(m.group(1)) for name in names if (m := re.match(r"blocks\.(\d+)\.", name))}
    count = max(held) + 1 if held else 0
    if not isinstance(layers, int) or isinstance(layers, bool) or layers != count:
        raise CheckpointError(f"{path}: num_layers is {layers!r} but the weights hold {count} blocks "
                              f"- config and weights are from different models, {REDOWNLOAD}")


def _check_dit_tensor(shard: Path, name: str, info: TensorInfo, expected: dict[str, tuple[int, ...]]) -> None:
    if name not in expected:
        raise CheckpointError(f"{shard}: unknown tensor {name} (not a FlashTalk DiT weight) - "
                              f"use the {MODEL_FOLDER} checkpoint")
    if info.shape != expected[name]:
        raise CheckpointError(f"{shard}: {name} has shape {list(info.shape)}, {DIT_CONFIG} implies "
                              f"{list(expected[name])} - config and weights are from different models, {REDOWNLOAD}")
    if info.dtype not in DIT_DTYPES:
        raise CheckpointError(f"{shard}: {name} is stored as {info.dtype}, expected one of "
                              f"{', '.join(DIT_DTYPES)} - {REDOWNLOAD}")


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """A `.pth` state dict memory-mapped (weights only); CheckpointError if absent or unreadable."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing - {REDOWNLOAD}")
    try:
        sd = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged or foreign file
        raise CheckpointError(f"{path}: not a readable PyTorch state dict "
                              f"({str(exc).splitlines()[0][:120]}) - {REDOWNLOAD}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a plain state dict of tensors - {REDOWNLOAD}")
    return sd


def _check_keys(path: Path, sd: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    problem = describe_key_mismatch(sd, expected)
    if problem:
        raise CheckpointError(f"{path}: {problem} - {REDOWNLOAD}")


def _check_width(path: Path, what: str, found: int, config_key: str, config: dict) -> None:
    if found != config[config_key]:
        raise CheckpointError(f"{path}: {what} is {found} but the DiT's {config_key} is {config[config_key]} "
                              f"- the files come from different models, {REDOWNLOAD}")


def validate_encoders(model_dir: Path, config: dict) -> None:
    """umT5, CLIP and VAE `.pth` files: readable, official key layout, widths the DiT expects."""
    model_dir = Path(model_dir)
    path = model_dir / T5_CHECKPOINT
    sd = load_pth(path)
    t5_config = _read_config(path, t5.t5_config_from_state_dict, sd)
    _check_keys(path, sd, t5.official_t5_key_shapes(t5_config))
    _check_width(path, "the umT5 width", t5_config.dim, "text_dim", config)

    path = model_dir / CLIP_CHECKPOINT
    sd = load_pth(path)
    clip_config = _read_config(path, clip.clip_visual_config_from_state_dict, sd)
    visual = {k: v for k, v in sd.items() if k.startswith(clip.VISUAL_PREFIX)}
    _check_keys(path, visual, clip.official_clip_visual_key_shapes(clip_config))
    if "log_scale" not in sd or not any(k.startswith("textual.") for k in sd):
        raise CheckpointError(f"{path}: no text tower (textual.*, log_scale) - {REDOWNLOAD}")
    _check_width(path, "the CLIP vision width", clip_config.dim, "clip_dim", config)

    path = model_dir / VAE_CHECKPOINT
    sd = load_pth(path)
    vae_config = _read_config(path, vae.vae_config_from_state_dict, sd)
    _check_keys(path, sd, vae.official_vae_key_shapes(vae_config.z_dim, vae_config.base_dim))
    _check_width(path, "the VAE latent channels", vae_config.z_dim, "out_dim", config)

    for tokenizer in (T5_TOKENIZER, CLIP_TOKENIZER):
        folder = model_dir / tokenizer
        if not folder.is_dir() or not any(folder.iterdir()):
            raise CheckpointError(f"{folder}: tokenizer folder missing or empty - {REDOWNLOAD}")


def _read_config(path: Path, reader, sd: dict[str, torch.Tensor]):
    try:
        return reader(sd)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {str(exc).splitlines()[0]} - {REDOWNLOAD}") from None


def validate_wav2vec(wav2vec_dir: Path, config: dict) -> None:
    """The wav2vec2 folder: configs readable, weights complete, layers/width the DiT expects."""
    wav2vec_dir = Path(wav2vec_dir)
    if not wav2vec_dir.is_dir():
        raise CheckpointError(f"{wav2vec_dir}: wav2vec2 folder not found - download {WAV2VEC_REPO} "
                              "there or pass its path")
    model_config = _read_json(wav2vec_dir / WAV2VEC_CONFIG, "the wav2vec2 config")
    _read_json(wav2vec_dir / WAV2VEC_PREPROCESSOR, "the wav2vec2 feature extractor config")
    weights = [wav2vec_dir / name for name in WAV2VEC_WEIGHTS if (wav2vec_dir / name).is_file()]
    if not weights:
        raise CheckpointError(f"{wav2vec_dir}: no {' or '.join(WAV2VEC_WEIGHTS)} - {REDOWNLOAD}")
    if weights[0].suffix == ".safetensors":
        read_safetensors_header(weights[0])
    else:
        load_pth(weights[0])
    path = wav2vec_dir / WAV2VEC_CONFIG
    _check_width(path, "num_hidden_layers", model_config.get("num_hidden_layers"), "audio_layers", config)
    _check_width(path, "hidden_size", model_config.get("hidden_size"), "audio_dim", config)


def validate_model_dir(model_dir: Path, wav2vec_dir: Path) -> None:
    """Raise CheckpointError (one line: file + fix) unless both folders load as FlashTalk."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: model folder not found - download {MODEL_REPO} "
                              "there (`flashtalk models download`) or pass its path")
    config = validate_dit(model_dir)
    validate_encoders(model_dir, config)
    validate_wav2vec(wav2vec_dir, config)
