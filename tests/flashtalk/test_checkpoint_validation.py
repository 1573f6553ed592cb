"""Checkpoint folders: the tiny one validates and loads; each kind of damage gets a one-line error naming the file."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file

from engine.flashtalk.model import t5
from engine.flashtalk.model.dit import FlashTalkDiT
from engine.flashtalk.weights.checkpoint_layout import (
    CLIP_CHECKPOINT,
    DIT_CONFIG,
    DIT_INDEX,
    MODEL_FOLDER,
    T5_CHECKPOINT,
    T5_TOKENIZER,
    VAE_CHECKPOINT,
    WAV2VEC_CONFIG,
    WAV2VEC_FOLDER,
    dit_shard_name,
)
from engine.flashtalk.weights.checkpoint_validation import CheckpointError, validate_model_dir
from engine.flashtalk.weights.dit_loader import load_dit
from engine.flashtalk.weights.tiny_checkpoint import make_tiny
from engine.flashtalk.weights.tiny_encoders import random_state_dict

SHARD1, SHARD2 = dit_shard_name(1, 2), dit_shard_name(2, 2)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    make_tiny(root, seed=3)
    return root


@pytest.fixture
def folders(pristine, tmp_path) -> tuple[Path, Path]:
    """A private copy of the tiny checkpoint to damage."""
    shutil.copytree(pristine, tmp_path / "ckpt")
    return tmp_path / "ckpt" / MODEL_FOLDER, tmp_path / "ckpt" / WAV2VEC_FOLDER


def assert_rejected(model_dir: Path, wav2vec_dir: Path, culprit: Path, *words: str) -> str:
    with pytest.raises(CheckpointError) as info:
        validate_model_dir(model_dir, wav2vec_dir)
    message = str(info.value)
    assert "\n" not in message and str(culprit) in message, message
    for word in words:
        assert word in message, message
    return message


def _rewrite_shard(model_dir: Path, name: str, edit) -> None:
    tensors = load_file(model_dir / name)
    edit(tensors)
    save_file(tensors, model_dir / name, metadata={"format": "pt"})


def _rewrite_index(model_dir: Path, edit) -> None:
    index = json.loads((model_dir / DIT_INDEX).read_text())
    edit(index["weight_map"])
    (model_dir / DIT_INDEX).write_text(json.dumps(index))


def test_tiny_checkpoint_validates_and_loads_exactly(folders):
    model_dir, wav2vec_dir = folders
    validate_model_dir(model_dir, wav2vec_dir)
    model = load_dit(model_dir, "cpu", torch.float32)
    written = {**load_file(model_dir / SHARD1), **load_file(model_dir / SHARD2)}
    loaded = model.state_dict()
    assert set(loaded) == set(written)
    assert all(torch.equal(loaded[k], written[k].float()) for k in written)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert model.attention_backend == "math"
    via_diffusers = FlashTalkDiT.from_pretrained(model_dir, torch_dtype=torch.float32).state_dict()
    assert all(torch.equal(via_diffusers[k], loaded[k]) for k in loaded)


def test_missing_model_folder(tmp_path):
    assert_rejected(tmp_path / "nope", tmp_path, tmp_path / "nope", "not found", "download")


def test_missing_config(folders):
    (folders[0] / DIT_CONFIG).unlink()
    assert_rejected(*folders, folders[0] / DIT_CONFIG, "missing")


def test_config_that_is_not_json(folders):
    (folders[0] / DIT_CONFIG).write_text("{ not json")
    assert_rejected(*folders, folders[0] / DIT_CONFIG, "JSON")


def test_missing_shard(folders):
    (folders[0] / SHARD2).unlink()
    assert_rejected(*folders, folders[0] / SHARD2, "missing", DIT_INDEX)


def test_index_naming_a_shard_that_does_not_exist(folders):
    _rewrite_index(folders[0], lambda m: m.update({"head.head.weight": "diffusion_pytorch_model-00003.safetensors"}))
    assert_rejected(*folders, folders[0] / "diffusion_pytorch_model-00003.safetensors", "missing")


def test_truncated_shard(folders):
    path = folders[0] / SHARD1
    path.write_bytes(path.read_bytes()[:-1000])
    assert_rejected(*folders, path, "truncated")


def test_shard_with_damaged_header(folders):
    path = folders[0] / SHARD1
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    path.write_bytes(bytes(data))
    assert_rejected(*folders, path, "damaged")


def _rewrite_header(path: Path, edit) -> None:
    """Replace a shard's JSON header by edit(header), keeping its data bytes."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = edit(json.loads(data[8:8 + length]))
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])


def _two_tensors(header: dict) -> tuple[str, str]:
    names = sorted((n for n in header if n != "__metadata__"), key=lambda n: header[n]["data_offsets"][0])
    return names[0], names[1]


def _moved_to_first(header: dict, entry: dict) -> list[int]:
    """Offsets for `entry` starting where the first tensor starts: the two overlap."""
    begin, end = entry["data_offsets"]
    start = header[_two_tensors(header)[0]]["data_offsets"][0]
    return [start, start + end - begin]


def _entry(change):
    def edit(header):
        change(header[_two_tensors(header)[1]], header)
        return header
    return edit


@pytest.mark.parametrize("damage, says", [
    (lambda h: [h], "not a map of tensors"),
    (_entry(lambda e, h: h.update({_two_tensors(h)[1]: "oops"})), "is not a map"),
    (_entry(lambda e, h: e.pop("shape")), "no shape"),
    (_entry(lambda e, h: e.update(data_offsets=[str(v) for v in e["data_offsets"]])), "no data_offsets"),
    (_entry(lambda e, h: e.update(data_offsets=[-4, e["data_offsets"][1] - e["data_offsets"][0] - 4])),
     "no data_offsets"),
    (_entry(lambda e, h: e.update(dtype="F12")), "unknown dtype"),
    (_entry(lambda e, h: e.update(data_offsets=_moved_to_first(h, e))), "overlaps the tensor before it"),
])
def test_damaged_header_entries_are_one_line_each(folders, damage, says):
    path = folders[0] / SHARD1
    _rewrite_header(path, damage)
    assert_rejected(*folders, path, says)


def test_a_config_asking_for_more_blocks_than_the_weights_hold_is_refused_at_once(folders):
    """num_layers 1000000 used to build a million meta blocks (minutes); the headers say 2."""
    config = json.loads((folders[0] / DIT_CONFIG).read_text())
    (folders[0] / DIT_CONFIG).write_text(json.dumps({**config, "num_layers": 1_000_000}))
    message = assert_rejected(*folders, folders[0] / DIT_CONFIG, "num_layers is 1000000", "hold 2 blocks")
    assert "different models" in message


def test_models_check_and_render_say_one_line_for_a_damaged_header(folders, tmp_path, capfd):
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.flashtalk.cli_in_process import flashtalk_in_process
    _rewrite_header(folders[0] / SHARD1, _entry(lambda e, h: e.pop("shape")))
    check = subprocess.run([sys.executable, "-m", "engine", "models", "check", str(folders[0])],
                           capture_output=True, text=True, cwd=ROOT, timeout=300)  # a real process
    render = flashtalk_in_process(capfd, "render", "--quiet", "--backend", "flashtalk", "--model", str(folders[0]),
                                  "--device", "cpu", "--out", str(tmp_path / "o.mp4"))  # the same `main`, in-process
    for result in (check, render):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "no shape" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_shapes_that_do_not_match_the_config(folders):
    config = json.loads((folders[0] / DIT_CONFIG).read_text())
    (folders[0] / DIT_CONFIG).write_text(json.dumps({**config, "ffn_dim": config["ffn_dim"] * 2}))
    assert_rejected(*folders, folders[0], "shape", "ffn")


def test_wrong_dtype(folders):
    def to_int(tensors):
        name = next(k for k in tensors if k.endswith("ffn.0.weight"))
        tensors[name] = tensors[name].to(torch.int32)
    shard = next(s for s in (SHARD1, SHARD2) if any(k.endswith("ffn.0.weight") for k in load_file(folders[0] / s)))
    _rewrite_shard(folders[0], shard, to_int)
    assert_rejected(*folders, folders[0] / shard, "I32", "BF16")


def test_unknown_key(folders):
    _rewrite_shard(folders[0], SHARD2, lambda t: t.update({"blocks.0.lora_A.weight": torch.zeros(2, 2)}))
    _rewrite_index(folders[0], lambda m: m.update({"blocks.0.lora_A.weight": SHARD2}))
    assert_rejected(*folders, folders[0] / SHARD2, "unknown tensor", "blocks.0.lora_A.weight")


def test_missing_key(folders):
    _rewrite_shard(folders[0], SHARD1, lambda t: t.pop("patch_embedding.weight"))
    _rewrite_index(folders[0], lambda m: m.pop("patch_embedding.weight"))
    assert_rejected(*folders, folders[0], "missing", "patch_embedding.weight")


def test_shard_disagreeing_with_its_index(folders):
    _rewrite_shard(folders[0], SHARD1, lambda t: t.pop("patch_embedding.weight"))
    assert_rejected(*folders, folders[0] / SHARD1, DIT_INDEX, "patch_embedding.weight")


@pytest.mark.parametrize("name", [T5_CHECKPOINT, CLIP_CHECKPOINT, VAE_CHECKPOINT])
def test_missing_encoder_file(folders, name):
    (folders[0] / name).unlink()
    assert_rejected(*folders, folders[0] / name, "missing")


@pytest.mark.parametrize("name", [T5_CHECKPOINT, CLIP_CHECKPOINT, VAE_CHECKPOINT])
def test_corrupt_encoder_file(folders, name):
    path = folders[0] / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert_rejected(*folders, path, "not a readable PyTorch state dict")


@pytest.mark.parametrize("name,key", [(T5_CHECKPOINT, "norm.weight"),
                                      (CLIP_CHECKPOINT, "visual.post_norm.weight"),
                                      (VAE_CHECKPOINT, "decoder.head.2.weight")])
def test_encoder_file_with_a_missing_key(folders, name, key):
    path = folders[0] / name
    sd = torch.load(path, weights_only=True)
    del sd[key]
    torch.save(sd, path)
    assert_rejected(*folders, path, "missing keys", key)


def test_encoder_width_that_does_not_match_the_dit(folders):
    """A well-formed umT5 file of another width than the DiT's text_dim (mixed-up downloads)."""
    path = folders[0] / T5_CHECKPOINT
    config = t5.t5_config_from_state_dict(torch.load(path, weights_only=True))
    wider = dataclasses.replace(config, dim=config.dim + 8)
    torch.save(random_state_dict(t5.official_t5_key_shapes(wider), seed=0), path)
    assert_rejected(*folders, path, "text_dim")


def test_missing_tokenizer(folders):
    shutil.rmtree(folders[0] / T5_TOKENIZER)
    assert_rejected(*folders, folders[0] / T5_TOKENIZER, "tokenizer")


def test_missing_wav2vec_folder(folders):
    shutil.rmtree(folders[1])
    assert_rejected(*folders, folders[1], "wav2vec2", "not found")


def test_wav2vec_with_other_layer_count(folders):
    path = folders[1] / WAV2VEC_CONFIG
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "num_hidden_layers": config["num_hidden_layers"] + 1}))
    assert_rejected(*folders, path, "num_hidden_layers", "audio_layers")
