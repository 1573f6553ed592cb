"""The memory plan's arithmetic, against the module sizes it is made of and the H200 measurements."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.runtime.memory_plan import (  # noqa: E402
    ALLOCATOR_RESERVE,
    GIB,
    LEVELS,
    MemoryPlanError,
    ModuleSizes,
    Workload,
    choose_plan,
    minimum_budget,
    plan_level,
    spread,
    usable,
    working_memory,
)
from engine.flashtalk.runtime.module_sizes import checkpoint_sizes, loaded_sizes, module_bytes  # noqa: E402

MIB = 2 ** 20
# A model whose parts are easy to add up by hand: 8 blocks of 100 MiB, the rest distinct sizes.
HAND = ModuleSizes(precision="bf16", dit_blocks=(100 * MIB,) * 8, dit_other=30 * MIB,
                   text_stages=(70 * MIB, 20 * MIB, 20 * MIB, 1 * MIB), clip=50 * MIB, vae=40 * MIB,
                   audio=10 * MIB, dit_dim=64, text_dim=64, text_len=512, clip_dim=64, clip_tokens=257,
                   vae_base_dim=8, audio_dim=32)
WORK = Workload(tokens=4096, pixels=256 * 256, window_samples=128_000)

# Measured on one H200, 2026-12-01 (docs/bench/2026-12-01-h200x1-memory-check.json): setup ->
# (level, streamed blocks, max_memory_allocated over the session in GiB).
H200_PEAKS = {("bf16", "none", 0): 47.87, ("bf16", "encoders", 0): 39.60, ("bf16", "blocks", 40): 6.63,
              ("fp8", "none", 0): 30.51, ("fp8", "blocks", 7): 20.07, ("fp8", "all", 40): 5.43}


@pytest.fixture(scope="module")
def official() -> dict[str, ModuleSizes]:
    return {precision: checkpoint_sizes(None, None, precision) for precision in ("bf16", "fp8")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    from engine.flashtalk.weights.tiny_checkpoint import make_tiny
    return make_tiny(tmp_path_factory.mktemp("tiny"), seed=0)


def test_phase_peaks_add_up_the_module_sizes_level_by_level():
    work = working_memory(HAND, WORK)
    blocks, rest = 800 * MIB, 30 * MIB
    by_hand = {  # what stays on the device, what visits in each phase
        "none": dict(resident=blocks + rest + 50 * MIB + 40 * MIB + 10 * MIB, prompt=111 * MIB, portrait=0, vae=0,
                     audio=0),
        "encoders": dict(resident=blocks + rest + 40 * MIB + 10 * MIB, prompt=70 * MIB, portrait=50 * MIB, vae=0,
                         audio=0),
        # every block streams: none resident, two 100 MiB slots
        "blocks": dict(resident=200 * MIB + rest + 40 * MIB + 10 * MIB, prompt=70 * MIB, portrait=50 * MIB, vae=0,
                       audio=0),
        "all": dict(resident=200 * MIB + rest, prompt=70 * MIB, portrait=50 * MIB, vae=40 * MIB, audio=10 * MIB),
    }
    for level, hand in by_hand.items():
        plan = plan_level(HAND, level, WORK)
        expected = {"prompt": hand["prompt"], "portrait": hand["portrait"], "condition": hand["vae"],
                    "audio": hand["audio"], "denoise": 0, "decode": hand["vae"], "motion": hand["vae"]}
        for phase, visiting in expected.items():
            assert plan.phases[phase] == int(hand["resident"] + visiting + work[phase]), (level, phase)
    assert [plan_level(HAND, level, WORK).peak for level in LEVELS] == sorted(
        (plan_level(HAND, level, WORK).peak for level in LEVELS), reverse=True)


def test_working_memory_scales_with_the_tokens_and_pixels_of_one_gpu():
    one, two = working_memory(HAND, WORK), working_memory(HAND, dataclasses.replace(WORK, gpus=2))
    assert two["denoise"] == pytest.approx(one["denoise"] / 2)
    assert two["decode"] == pytest.approx(one["decode"] / 2)
    assert two["prompt"] == one["prompt"]  # every rank encodes the prompt and portrait itself


def test_blocks_with_a_budget_streams_the_fewest_blocks_that_fit():
    full = plan_level(HAND, "blocks", WORK, streamed=())
    budget = int((full.peak - 250 * MIB) / (1 - ALLOCATOR_RESERVE))
    plan = plan_level(HAND, "blocks", WORK, budget)
    count = len(plan.streamed)
    # n streamed blocks: n x 100 MiB leave the device, two 100 MiB slots come: 250 MiB needs n = 5
    assert plan.fits() and count == 5
    assert not plan_level(HAND, "blocks", WORK, budget, spread(count - 1, 8)).fits()
    assert plan.streamed == spread(5, 8) == (0, 2, 4, 5, 7)  # evenly spread
    assert plan.stream_bytes_per_step == 500 * MIB


def test_auto_takes_the_first_level_that_fits():
    peaks = {level: plan_level(HAND, level, WORK).peak for level in LEVELS}
    for level in ("none", "encoders"):
        budget = int(peaks[level] / (1 - ALLOCATOR_RESERVE)) + 1
        plan = choose_plan(HAND, "auto", WORK, budget)
        assert plan.level == level and plan.requested == "auto" and plan.fits()
    between = int((peaks["encoders"] - 50 * MIB) / (1 - ALLOCATOR_RESERVE))
    assert choose_plan(HAND, "auto", WORK, between).level == "blocks"
    assert choose_plan(HAND, "auto", WORK, None).level == "none"  # no budget: nothing offloaded


def test_a_budget_below_level_all_names_the_minimum():
    least = minimum_budget(HAND, WORK)
    assert usable(least) >= plan_level(HAND, "all", WORK).peak
    with pytest.raises(MemoryPlanError) as info:
        choose_plan(HAND, "blocks", WORK, least - 5 * MIB)
    message = str(info.value)
    assert "\n" not in message and f"{least / GIB:.1f} GiB" in message and "--offload all" in message
    assert choose_plan(HAND, "all", WORK, least).fits()


def test_a_level_that_does_not_fit_names_the_one_that_does():
    budget = int(plan_level(HAND, "encoders", WORK).peak / (1 - ALLOCATOR_RESERVE)) + 1
    with pytest.raises(MemoryPlanError) as info:
        choose_plan(HAND, "none", WORK, budget)
    assert "--offload encoders" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MemoryPlanError, match="unknown --offload"):
        choose_plan(HAND, "some", WORK)


def test_official_sizes_match_the_model_facts(official):
    """FLASHTALK_MODEL.md: the DiT has ~18.88 B parameters (37.8 GB in bf16); FP8 halves its blocks."""
    bf16, fp8 = official["bf16"], official["fp8"]
    dit_params = (sum(bf16.dit_blocks) + bf16.dit_other) / 2
    assert dit_params == pytest.approx(18.88e9, rel=0.01)
    assert len(bf16.dit_blocks) == 40 and len(bf16.text_stages) == 26  # embedding, 24 layers, norm
    assert sum(fp8.dit_blocks) == pytest.approx(sum(bf16.dit_blocks) / 2, rel=0.01)
    assert fp8.dit_other == bf16.dit_other  # embeddings and head stay bf16


def test_plan_predicts_the_h200_measurements_within_10_percent(official):
    work = Workload.of()
    for (precision, level, streamed), measured in H200_PEAKS.items():
        sizes = official[precision]
        plan = plan_level(sizes, level, work, streamed=spread(streamed, 40) if level != "all" else None)
        assert plan.peak / GIB == pytest.approx(measured, rel=0.10), (precision, level, streamed)
    # and the card budgets of issue 15 get the levels measured there
    assert choose_plan(official["bf16"], "auto", work, 46 * GIB).level == "encoders"
    fp8 = choose_plan(official["fp8"], "auto", work, 22 * GIB)
    assert fp8.level == "blocks" and fp8.peak <= 22 * GIB


def test_sizes_from_configs_equal_the_loaded_engine(tiny):
    """The plan is made before loading from meta-built modules; they weigh what the engine holds."""
    from engine.backends.base import BackendOptions
    from engine.backends.flashtalk import FlashTalkBackend

    model_dir, wav2vec_dir = tiny
    for precision in ("bf16", "fp8"):
        backend = FlashTalkBackend(BackendOptions(model_dir=model_dir, device="cpu", precision=precision))
        models = backend.runtime.pipeline.models
        planned = checkpoint_sizes(model_dir, wav2vec_dir, precision, torch.device("cpu"))  # fp32 encoders there
        assert loaded_sizes(models, precision) == planned
        assert backend.memory_plan.sizes == planned
        assert sum(backend.memory_plan.sizes.dit_blocks) == sum(module_bytes(b) for b in models.dit.blocks)
        backend.close()
