"""Flow matching, CFG, the DMD gradient and the K-chunk rollout on the tiny DiT and a real cache."""
from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")

from engine.flashtalk.model.vae import WanVAE  # noqa: E402
from engine.flashtalk.training.chunk_batch import WindowSampler, dit_velocity  # noqa: E402
from engine.flashtalk.training.dmd import dmd_generator_loss  # noqa: E402
from engine.flashtalk.training.flow_matching import dropout_masks, flow_matching_loss, sample_sigmas  # noqa: E402
from engine.flashtalk.training.rollout import GeneratorSchedule, motion_from_chunk, rollout  # noqa: E402
from engine.flashtalk.training.teacher_sampler import guided_velocity  # noqa: E402
from engine.flashtalk.training.train_config import ConditionDropout, Guidance  # noqa: E402
from engine.flashtalk.weights.checkpoint_layout import VAE_CHECKPOINT  # noqa: E402
from engine.flashtalk.weights.dit_loader import load_dit  # noqa: E402


@pytest.fixture(scope="module")
def dit(tiny_model):
    return load_dit(tiny_model[0], "cpu", torch.float32)


@pytest.fixture(scope="module")
def other_dit(tiny_model):
    """The same architecture with other weights (a stand-in for a critic that has moved)."""
    model = load_dit(tiny_model[0], "cpu", torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def _batch(cache, chunks=1, batch=2, first=0.0, seed=0):
    return WindowSampler(cache, list(range(len(cache))), chunks, batch, first, seed).draw()


def test_flow_matching_scores_only_the_new_frames(dit, cache):
    b = _batch(cache)
    x0, motion, cond = b.latents[:, 0], b.first_motion(), b.conditions(0)
    g = torch.Generator().manual_seed(0)
    sigma, noise = sample_sigmas(2, 5.0, g), torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        loss = flow_matching_loss(dit, x0, motion, cond, sigma, noise)
        changed = x0.clone()
        changed[:, :, :2] += 3.0  # ground truth under the motion latents is never looked at
        assert torch.equal(flow_matching_loss(dit, changed, motion, cond, sigma, noise), loss)
        x_t = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
        x_t[:, :, :2] = motion
        v = dit_velocity(dit, x_t, sigma * 1000, cond)
        manual = ((v - (noise - x0))[:, :, 2:] ** 2).mean()
    torch.testing.assert_close(loss, manual)


def test_flow_matching_learns_a_fixed_batch(tiny_model, cache):
    model = load_dit(tiny_model[0], "cpu", torch.float32).train().requires_grad_(True)
    b = _batch(cache, batch=4)
    x0, motion, cond = b.latents[:, 0], b.first_motion(), b.conditions(0)
    g = torch.Generator().manual_seed(1)
    sigma, noise = sample_sigmas(4, 5.0, g), torch.randn(x0.shape, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = flow_matching_loss(model, x0, motion, cond, sigma, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_dropout_shares():
    keep_text, keep_audio = dropout_masks(20000, ConditionDropout(0.1, 0.2, 0.3), torch.Generator().manual_seed(0))
    assert abs((~keep_text & keep_audio).float().mean() - 0.1) < 0.01
    assert abs((keep_text & ~keep_audio).float().mean() - 0.2) < 0.01
    assert abs((~keep_text & ~keep_audio).float().mean() - 0.3) < 0.01


def test_guidance_is_the_three_branch_formula(dit, cache):
    b = _batch(cache)
    x, t, cond = b.latents[:, 0], torch.tensor([700.0, 300.0]), b.conditions(0)
    with torch.no_grad():
        guided = guided_velocity(dit, x, t, cond, b.null_text, Guidance(3.0, 4.0))
        full = dit_velocity(dit, x, t, cond)
        no_text = dit_velocity(dit, x, t, cond.where(torch.tensor([False, False]), torch.tensor([True, True]),
                                                     b.null_text))
        uncond = dit_velocity(dit, x, t, cond.where(torch.tensor([False, False]), torch.tensor([False, False]),
                                                    b.null_text))
        assert not torch.allclose(full, uncond)
    torch.testing.assert_close(guided, uncond + 3 * (full - no_text) + 4 * (no_text - uncond), rtol=1e-4, atol=1e-4)


def test_dmd_gradient_vanishes_when_the_critic_is_the_teacher_without_guidance(dit, other_dit, cache):
    b = _batch(cache)
    motion, cond = b.first_motion(), b.conditions(0)
    sample = b.latents[:, 0].clone().requires_grad_(True)
    g = torch.Generator().manual_seed(2)
    sigma, noise = sample_sigmas(2, 5.0, g, 0.02, 0.98), torch.randn(sample.shape, generator=g)
    terms = dmd_generator_loss(sample, motion, cond, b.null_text, dit, dit, Guidance(1.0, 1.0), sigma, noise)
    terms.loss.backward()
    assert terms.real_fake_gap < 1e-5 and sample.grad.abs().max() < 1e-6
    sample.grad = None
    terms = dmd_generator_loss(sample, motion, cond, b.null_text, dit, other_dit, Guidance(3.0, 4.0), sigma, noise)
    terms.loss.backward()
    grad = sample.grad
    assert grad[:, :, :2].abs().max() == 0  # motion frames are not generated
    with torch.no_grad():  # the surrogate's gradient is (x0_fake - x0_real) / normaliser / N
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * sample + s * noise
        x_t[:, :, :2] = motion
        real = x_t - s * guided_velocity(dit, x_t, sigma * 1000, cond, b.null_text, Guidance(3.0, 4.0))
        fake = x_t - s * dit_velocity(other_dit, x_t, sigma * 1000, cond)
        norm = (sample - real)[:, :, 2:].abs().mean(dim=(1, 2, 3, 4), keepdim=True)
        expected = (fake - real)[:, :, 2:] / norm / grad[:, :, 2:].numel()
    torch.testing.assert_close(grad[:, :, 2:], expected, rtol=1e-4, atol=1e-9)


def test_rollout_conditions_each_chunk_on_its_own_previous_output(dit, tiny_model, cache):
    vae = WanVAE.from_official(tiny_model[0] / VAE_CHECKPOINT, device="cpu", dtype=torch.float32)
    b = _batch(cache, chunks=3, batch=2)
    schedule = GeneratorSchedule.for_settings(cache.settings, torch.device("cpu"))
    chunks = list(rollout(functools.partial(dit_velocity, dit), vae, b, cache.settings, schedule,
                          torch.Generator().manual_seed(0)))
    assert [c.chunk for c in chunks] == [0, 1, 2]
    assert torch.equal(chunks[0].motion, b.latents[:, 0, :, :2])  # chunk 0: ground truth
    for previous, chunk in zip(chunks, chunks[1:]):
        own = motion_from_chunk(vae, previous.output, b.reference, cache.settings)
        assert torch.equal(chunk.motion, own)
        assert torch.equal(chunk.output[:, :, :2], own)  # imposed on the output too
    ground_truth = b.latents[:, 1, :, :2]
    assert not torch.allclose(chunks[1].motion, ground_truth, atol=1e-3)
    first = WindowSampler(cache, [0], 1, 1, 1.0, 0).draw()
    assert first.first_chunk and torch.equal(first.first_motion(), first.ref_latent)  # a session's chunk 0
