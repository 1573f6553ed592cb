"""Training checkpoints: resumable state plus the trained DiT in the official layout.

`RUN/checkpoints/step-NNNNNN/` holds
    SoulX-FlashTalk-14B/    the trained DiT (config.json + shards + index) and the encoders,
                            VAE and tokenizers linked from the model it started from
    chinese-wav2vec2-base/  linked likewise: the folder pair `flashtalk serve --model` loads
    train_state/            every trained network and optimizer (torch.distributed.checkpoint,
                            sharded when FSDP is on), for --resume
    progress.json           step, data-sampler and noise-stream states of every rank
It is written under a temporary name and renamed when complete (write-then-rename), so a crash
never leaves a half checkpoint where --resume looks, and the previous checkpoint is removed only
after the new one is in place.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from avkit.disk_space import DiskFullError, is_disk_full
from engine.flashtalk.model.state_dict_check import describe_key_mismatch
from engine.flashtalk.training.fsdp_setup import TrainWorld
from engine.flashtalk.weights.checkpoint_layout import (
    CLIP_CHECKPOINT,
    CLIP_TOKENIZER,
    T5_CHECKPOINT,
    T5_TOKENIZER,
    VAE_CHECKPOINT,
)
from engine.flashtalk.weights.checkpoint_validation import CheckpointError
from engine.flashtalk.weights.dit_writer import write_dit
from engine.flashtalk.weights.tiny_checkpoint import MODEL_FOLDER, WAV2VEC_FOLDER

CHECKPOINTS = "checkpoints"
STEP_PREFIX = "step-"
STATE_DIR = "train_state"
PROGRESS_FILE = "progress.json"
KEEP_CHECKPOINTS = 2
ENCODER_FILES = (T5_CHECKPOINT, CLIP_CHECKPOINT, VAE_CHECKPOINT)
ENCODER_DIRS = (T5_TOKENIZER, CLIP_TOKENIZER)

Trained = dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]]  # name -> (network, its optimizer)


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{STEP_PREFIX}{step:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (partial ones have another name)."""
    found = sorted((Path(run_dir) / CHECKPOINTS).glob(f"{STEP_PREFIX}*"))
    return found[-1] if found else None


def _link_or_copy(src: str, dst: str) -> None:
    """Hard link (no copy of a 11 GB encoder) when source and target share a file system."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_model_folder(dit: torch.nn.Module, world: TrainWorld, base_model_dir: Path, wav2vec_dir: Path,
                        target: Path, dtype: torch.dtype) -> Path | None:
    """Write `target/SoulX-FlashTalk-14B` + `target/chinese-wav2vec2-base`; -> the model folder (leader).

    Every rank must call it (the full state dict is gathered from the shards); only the leader writes.
    """
    state = get_model_state_dict(dit, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not world.is_leader:
        return None
    model_dir = Path(target) / MODEL_FOLDER
    write_dit(model_dir, dict(dit.config), state, dtype)
    for name in ENCODER_FILES:
        _link_or_copy(str(Path(base_model_dir) / name), str(model_dir / name))
    for name in ENCODER_DIRS:
        shutil.copytree(Path(base_model_dir) / name, model_dir / name, copy_function=_link_or_copy)
    shutil.copytree(wav2vec_dir, Path(target) / WAV2VEC_FOLDER, copy_function=_link_or_copy)
    return model_dir


def save_checkpoint(run_dir: Path, step: int, trained: Trained, exported: torch.nn.Module, world: TrainWorld,
                    base_model_dir: Path, wav2vec_dir: Path, progress: dict, dtype: torch.dtype) -> Path:
    """Write step `step`'s checkpoint atomically; -> its folder. Collective: every rank calls it."""
    final = step_dir(run_dir, step)
    partial = final.with_name(f".{final.name}.partial")
    if world.is_leader:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    world.barrier()
    try:
        with _single_process_is_intended():
            dcp.save(_state(trained), checkpoint_id=str(partial / STATE_DIR), no_dist=not dist.is_initialized())
        export_model_folder(exported, world, base_model_dir, wav2vec_dir, partial, dtype)
    except (Exception, CheckpointException) as exc:  # DCP's exception is a BaseException
        shutil.rmtree(partial, ignore_errors=True)  # the previous checkpoint stays the newest
        raise _write_failure(exc, final, latest_checkpoint(run_dir)) from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if world.is_leader:
        (partial / PROGRESS_FILE).write_text(json.dumps({"step": step, **progress}), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        for old in sorted((Path(run_dir) / CHECKPOINTS).glob(f"{STEP_PREFIX}*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
    world.barrier()
    return final


def _write_failure(exc: BaseException, target: Path, kept: Path | None) -> CheckpointError:
    """One line for a checkpoint that could not be written. torch.distributed.checkpoint reports a
    full disk as a RuntimeError without an errno, so any failure here gets the same advice."""
    if isinstance(exc, CheckpointException) and exc.failures:
        exc = next(iter(exc.failures.values()))[0]  # (exception, traceback) of the first failing rank
    reason = str(DiskFullError(exc.errno, exc.filename or target)) if is_disk_full(exc) else \
        f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'no details'}"
    previous = f"{kept} is kept" if kept else "no earlier checkpoint exists"
    return CheckpointError(f"could not write {target} ({reason}) - free some disk space or choose another --out; "
                           f"{previous}, --resume continues from it")


@contextlib.contextmanager
def _single_process_is_intended():
    """DCP warns on every save and load outside a process group; an unsharded run is one on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _state(trained: Trained) -> dict:
    state = {}
    for name, (model, optimizer) in trained.items():
        model_state, optim_state = get_state_dict(model, optimizer)
        state[name] = {"model": model_state, "optim": optim_state}
    return state


def load_checkpoint(path: Path, trained: Trained) -> dict:
    """Restore networks and optimizers from `path` (a step folder); -> its progress dict.

    CheckpointError (one line) when the saved networks have other shapes than this run's.
    """
    path = Path(path)
    saved = dcp.FileSystemReader(str(path / STATE_DIR)).read_metadata().state_dict_metadata
    for name, (model, _) in trained.items():
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        found = {k[len(name) + len(".model."):]: tuple(meta.size) for k, meta in saved.items()
                 if k.startswith(f"{name}.model.") and hasattr(meta, "size")}
        problem = describe_key_mismatch({k: torch.empty(s, device="meta") for k, s in found.items()}, expected)
        if problem:
            raise CheckpointError(f"{path}: the saved {name} does not fit this run's model ({problem}) "
                                  "- resume with the same model and data, or start a new --out folder")
    state = _state(trained)
    with _single_process_is_intended():
        dcp.load(state, checkpoint_id=str(path / STATE_DIR), no_dist=not dist.is_initialized())
    for name, (model, optimizer) in trained.items():
        set_state_dict(model, optimizer, model_state_dict=state[name]["model"],
                       optim_state_dict=state[name]["optim"])
    return json.loads((path / PROGRESS_FILE).read_text(encoding="utf-8"))


def check_condition_widths(config: dict, widths: dict[str, int], model_dir: Path) -> None:
    """CheckpointError unless the DiT of `model_dir` takes the cached conditions' widths."""
    for key, width in widths.items():
        if config.get(key) != width:
            raise CheckpointError(f"{model_dir}: the DiT's {key} is {config.get(key)} but the data cache has "
                                  f"{width} - preprocess the data with this model's encoders")


def rank_progress(sampler, rng: torch.Generator, world: TrainWorld) -> dict:
    """Every rank's data-sampler and noise-stream states, gathered for progress.json (collective)."""
    mine = {"sampler": sampler.state_dict(), "rng": rng.get_state().tolist()}
    if not dist.is_initialized():
        return {"ranks": [mine]}
    # As JSON bytes in a tensor, not all_gather_object: nothing a rank receives is unpickled.
    data = torch.tensor(list(json.dumps(mine).encode()), dtype=torch.uint8, device=world.device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=world.device) for _ in range(world.world_size)]
    dist.all_gather(sizes, torch.tensor([data.numel()], dtype=torch.int64, device=world.device))
    longest = int(max(size.item() for size in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=world.device)
    padded[:data.numel()] = data
    gathered = [torch.zeros(longest, dtype=torch.uint8, device=world.device) for _ in range(world.world_size)]
    dist.all_gather(gathered, padded)
    return {"ranks": [json.loads(bytes(g[:int(n.item())].tolist()).decode()) for g, n in zip(gathered, sizes)]}


def restore_rank_progress(progress: dict, sampler, rng: torch.Generator, world: TrainWorld) -> None:
    ranks = progress["ranks"]
    if len(ranks) != world.world_size:
        raise CheckpointError(f"the checkpoint was written by {len(ranks)} ranks, this run has "
                              f"{world.world_size} - resume with the same number of processes")
    sampler.load_state_dict(ranks[world.rank]["sampler"])
    rng.set_state(torch.tensor(ranks[world.rank]["rng"], dtype=torch.uint8))
