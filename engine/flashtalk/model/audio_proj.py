"""Audio tokens of the DiT: wav2vec2 features per video frame -> 32 tokens per latent frame.

The input holds, per video frame, a window of 5 feature frames (offsets -2..+2) of 12 wav2vec2
layers. Latent frame 0 covers video frame 0 alone: its whole window (5 entries) goes through
`proj1`. Every later latent frame covers `vae_scale`=4 video frames a,b,c,d; it keeps a's window
up to the centre (3), the centre of b and c (1 each) and d's window from the centre (3): 8 entries
through `proj1_vf`. Both then share ReLU -> proj2 -> ReLU -> proj3 -> LayerNorm (float32).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def select_frame_windows(audio: torch.Tensor, vae_scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """audio [B, 1 + vae_scale*(F-1), W, Ly, C] -> (first [B, 1, W, Ly, C], later [B, F-1, W+vae_scale-1, Ly, C])."""
    b, frames, window, layers, channels = audio.shape
    if (frames - 1) % vae_scale:
        raise ValueError(f"audio has {frames} video frames; expected 1 + {vae_scale}*k")
    mid = window // 2
    first = audio[:, :1]
    groups = audio[:, 1:].reshape(b, (frames - 1) // vae_scale, vae_scale, window, layers, channels)
    head = groups[:, :, 0, :mid + 1]  # [B, F-1, mid+1, Ly, C]: first video frame, window start..centre
    middle = groups[:, :, 1:-1, mid]  # [B, F-1, vae_scale-2, Ly, C]: inner video frames, centre only
    tail = groups[:, :, -1, mid:]  # [B, F-1, W-mid, Ly, C]: last video frame, centre..window end
    return first, torch.cat([head, middle, tail], dim=2)


class AudioProjModel(nn.Module):
    """Per latent frame: flattened window entries -> `context_tokens` tokens of `output_dim`."""

    def __init__(self, window: int, vae_scale: int, layers: int, channels: int, intermediate_dim: int,
                 output_dim: int, context_tokens: int, norm_output_audio: bool):
        super().__init__()
        self.context_tokens = context_tokens
        self.output_dim = output_dim
        self.proj1 = nn.Linear(window * layers * channels, intermediate_dim)
        self.proj1_vf = nn.Linear((window + vae_scale - 1) * layers * channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim) if norm_output_audio else None

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """first [B, 1, W, Ly, C], later [B, F-1, W', Ly, C] -> [B, F, tokens, output_dim].

        The output is float32 when the LayerNorm is on (it runs in float32), else the input dtype.
        """
        b = first.shape[0]
        h_first = torch.relu(self.proj1(first.flatten(2)))  # [B, 1, inter]
        h_later = torch.relu(self.proj1_vf(later.flatten(2)))  # [B, F-1, inter]
        h = torch.relu(self.proj2(torch.cat([h_first, h_later], dim=1)))  # [B, F, inter]
        tokens = self.proj3(h).reshape(b, -1, self.context_tokens, self.output_dim)  # [B, F, tokens, out]
        if self.norm is None:
            return tokens
        return F.layer_norm(tokens.float(), (self.output_dim,), self.norm.weight.float(),
                            self.norm.bias.float(), self.norm.eps)
