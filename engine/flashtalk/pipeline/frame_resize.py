"""Resizing decoded video: frames made at a smaller quality profile shown at the session's size,
and motion frames carried to another size when the profile changes."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_video(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, 3, T, H, W] -> [B, 3, T, height, width], bilinear (antialiased when shrinking), same dtype."""
    b, c, t, h, w = video.shape
    if (h, w) == (height, width):
        return video
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # [B*T, 3, H, W]
    out = F.interpolate(frames.float(), size=(height, width), mode="bilinear", align_corners=False,
                        antialias=height < h or width < w)
    return out.reshape(b, t, c, height, width).permute(0, 2, 1, 3, 4).to(video.dtype)
