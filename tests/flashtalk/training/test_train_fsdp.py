"""FSDP2 over 2 CPU ranks (gloo): the same training as one process, mixed precision, and the real
Stage 1 loop sharded end to end (sharded load from rank 0, sharded checkpoint, export, resume)."""
from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402

from engine.flashtalk.training.chunk_batch import ChunkConditions, WindowSampler  # noqa: E402
from engine.flashtalk.training.flow_matching import flow_matching_loss, sample_sigmas  # noqa: E402
from engine.flashtalk.training.fsdp_setup import TrainWorld, prepare_dit  # noqa: E402
from engine.flashtalk.training.latent_cache import LatentCache  # noqa: E402
from engine.flashtalk.training.stage1 import train_stage1  # noqa: E402
from engine.flashtalk.training.train_config import Stage1Config  # noqa: E402
from engine.flashtalk.training.training_run import RunOptions  # noqa: E402
from engine.flashtalk.weights.dit_loader import load_dit  # noqa: E402
from tests.flashtalk.gloo_world import run_on_gloo_world  # noqa: E402

STEPS, BATCH = 3, 4


def _fixed_batch(cache) -> dict:
    b = WindowSampler(cache, list(range(len(cache))), 1, BATCH, 0.0, 7).draw()
    g = torch.Generator().manual_seed(5)
    return {"x0": b.latents[:, 0], "motion": b.first_motion(), "y": b.y, "context": b.text, "clip": b.clip,
            "audio": b.audio[:, 0], "sigma": sample_sigmas(BATCH, 5.0, g),
            "noise": torch.randn(b.latents[:, 0].shape, generator=g)}


def _train_steps(dit, batch: dict, rows: slice) -> list[float]:
    """STEPS SGD steps of flow matching on batch[rows]; -> the losses.

    SGD, not Adam: Adam's first steps are ~lr * sign(grad), so gradients that agree to 1e-9 but
    sit near zero would flip whole updates and hide whether the sharded gradients are right.
    """
    cond = ChunkConditions(batch["y"][rows], batch["context"][rows], batch["clip"][rows], batch["audio"][rows])
    opt = torch.optim.SGD(dit.parameters(), lr=0.05)
    losses = []
    for _ in range(STEPS):
        loss = flow_matching_loss(dit, batch["x0"][rows], batch["motion"][rows], cond, batch["sigma"][rows],
                                  batch["noise"][rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _sharded_training(rank: int, world_size: int, model_dir, batch: dict, precision: str, checkpointing: bool):
    from torch.distributed.device_mesh import init_device_mesh
    torch.set_num_threads(1)
    world = TrainWorld(rank, world_size, torch.device("cpu"), init_device_mesh("cpu", (world_size,)))
    dit = prepare_dit(load_dit(model_dir, "cpu", torch.float32), world, precision, checkpointing, trainable=True)
    dit.set_attention_backend(None)
    per_rank = BATCH // world_size
    losses = _train_steps(dit, batch, slice(rank * per_rank, (rank + 1) * per_rank))
    dtypes = {p.dtype for p in dit.parameters()}
    state = get_model_state_dict(dit, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {"state": state, "losses": losses, "dtypes": dtypes}


@pytest.fixture(scope="module")
def reference(tiny_model, cache):
    """One process, the whole batch, no sharding."""
    batch = _fixed_batch(cache)
    dit = load_dit(tiny_model[0], "cpu", torch.float32).train().requires_grad_(True)
    losses = _train_steps(dit, batch, slice(None))
    return batch, dit.state_dict(), losses


def _both_precisions(rank: int, world_size: int, model_dir, batch: dict) -> dict:
    """fp32 with activation checkpointing, then bf16 without, on one gloo world (one spawn)."""
    return {"fp32": _sharded_training(rank, world_size, model_dir, batch, "fp32", True),
            "bf16": _sharded_training(rank, world_size, model_dir, batch, "bf16", False)}


@pytest.fixture(scope="module")
def sharded(tiny_model, reference) -> dict:
    return run_on_gloo_world(2, _both_precisions, tiny_model[0], reference[0])


def test_two_sharded_ranks_train_exactly_like_one_process(tiny_model, reference, sharded):
    batch, state, _ = reference
    result = sharded["fp32"]
    assert result["dtypes"] == {torch.float32}
    assert result["state"].keys() == state.keys()
    for k, v in state.items():
        torch.testing.assert_close(result["state"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(state[k], load_dit(tiny_model[0], "cpu", torch.float32).state_dict()[k])
               for k in ("head.head.weight", "blocks.0.ffn.0.weight"))


def test_bf16_mixed_precision_keeps_float32_master_weights(tiny_model, reference, sharded):
    batch, state, _ = reference
    result = sharded["bf16"]
    assert result["dtypes"] == {torch.float32}  # master weights and optimizer states stay float32
    assert all(v.dtype == torch.float32 for v in result["state"].values())
    initial = load_dit(tiny_model[0], "cpu", torch.float32).state_dict()
    fp32_update = torch.cat([(state[k] - initial[k]).flatten() for k in state])
    bf16_update = torch.cat([(result["state"][k] - initial[k]).flatten() for k in state])
    # bf16 compute changes the gradients a little, not where the weights go
    assert torch.nn.functional.cosine_similarity(fp32_update, bf16_update, dim=0) > 0.9


def _stage1_on_ranks(rank: int, world_size: int, model_dir, wav2vec_dir, cache_root, run_dir,
                     configs: list[Stage1Config]) -> list[dict]:
    """One train_stage1 per config, each resuming from the checkpoints the one before left on disk."""
    from engine.flashtalk.training.fsdp_setup import join_train_world
    torch.set_num_threads(1)
    world = join_train_world("cpu", "fp32")  # torchrun's variables are set: FSDP2 over gloo
    assert world.sharded and world.world_size == world_size
    cache = LatentCache(cache_root)
    options = RunOptions(run_dir, device="cpu", export_dtype="fp32", resume=True, progress=False)
    runs = []
    for config in configs:
        result = train_stage1(cache, list(range(len(cache))), model_dir, wav2vec_dir, config, options, world)
        runs.append({"checkpoint": result.checkpoint, "steps": len(result.history["loss"])})
    return runs


def test_the_stage1_loop_runs_sharded_and_resumes(tmp_path, tiny_model, cache):
    config = Stage1Config(steps=2, batch=1, lr=1e-3, checkpoint_every=2, log_every=1)
    first, resumed = run_on_gloo_world(2, _stage1_on_ranks, *tiny_model, cache.root, tmp_path,
                                       [config, replace(config, steps=3)], init=False)
    assert first["checkpoint"].name == "step-000002" and first["steps"] == 2
    exported = load_dit(first["checkpoint"] / "SoulX-FlashTalk-14B", "cpu", torch.float32).state_dict()
    initial = load_dit(tiny_model[0], "cpu", torch.float32).state_dict()
    assert exported.keys() == initial.keys() and not torch.equal(exported["head.head.weight"],
                                                                 initial["head.head.weight"])
    assert resumed["checkpoint"].name == "step-000003" and resumed["steps"] == 3
