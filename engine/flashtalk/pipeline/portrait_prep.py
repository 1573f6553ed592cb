"""Portrait -> the reference frame the model conditions on: cover-resize, centre-crop, [-1, 1]."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def cover_resize_crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [height,width,3]: bilinear scale by the larger ratio (ceil), centre crop."""
    h, w = rgb.shape[:2]
    scale = max(height / h, width / w)
    new_h, new_w = math.ceil(scale * h), math.ceil(scale * w)
    resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), resample=Image.BILINEAR))
    top = int(round((new_h - height) / 2.0))  # torchvision center_crop's rounding
    left = int(round((new_w - width) / 2.0))
    return np.array(resized[top:top + height, left:left + width])  # a writable copy


def reference_tensor(rgb: np.ndarray, height: int, width: int, device, dtype) -> torch.Tensor:
    """-> [1, 3, 1, height, width] in [-1, 1]."""
    crop = cover_resize_crop(rgb, height, width)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None, :, None].to(device=device, dtype=dtype)
    return (x / 255 - 0.5) * 2


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3], truncating as the reference does."""
    x = ((video.float() + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0) * 255
    return x.to(torch.uint8).cpu().numpy()
