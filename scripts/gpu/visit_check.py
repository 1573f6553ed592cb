"""Does a visiting VAE (weights copied from a pinned host home for the call) decode as the resident one?

Run on the GPU machine: `python3 scripts/gpu/visit_check.py`. Same random latents through the
14B-size Wan VAE twice, resident then visiting: max difference (expected 0) and time of each.
"""
from __future__ import annotations

import time

import torch

from engine.flashtalk.model.vae import WanVAE, WanVAEConfig, build_diffusers_vae
from engine.flashtalk.pipeline.models import default_dtype
from engine.flashtalk.runtime.offload import Visitor


def decode_s(vae: WanVAE, z: torch.Tensor) -> tuple[torch.Tensor, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = vae.decode(z)
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main() -> None:
    torch.manual_seed(0)
    with default_dtype(torch.bfloat16), torch.device("cuda"):
        vae = WanVAE(build_diffusers_vae(WanVAEConfig()), "cuda")
    z = torch.randn(1, 16, 9, 96, 56, device="cuda", dtype=torch.bfloat16)
    decode_s(vae, z)
    resident, resident_s = decode_s(vae, z)
    visitor = Visitor(vae.model, torch.device("cuda"), pin=True)
    with visitor.visit():
        decode_s(vae, z)
    with visitor.visit():
        visiting, visiting_s = decode_s(vae, z)
    print(f"max |resident - visiting| = {(resident.float() - visiting.float()).abs().max().item():.3g}; "
          f"decode {resident_s * 1e3:.0f} ms resident, {visiting_s * 1e3:.0f} ms visiting; "
          f"home back: {visitor.home.at_home}")


if __name__ == "__main__":
    main()
