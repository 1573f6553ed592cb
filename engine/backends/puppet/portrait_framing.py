"""Fit a portrait to the output size: crop to the output's aspect around the head (zooming in on
small faces), then resize. Landmarks found on the portrait follow the same transform.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME_PER_FACE_WIDTH = 3.5  # zoom in until the frame is at most this many face widths wide ...
FRAME_PER_FACE_HEIGHT = 2.6  # ... and this many face heights tall (landmark box: brows to chin)
FOREHEAD = 0.5  # the head reaches this many landmark-box heights above the brows (forehead, hair)


@dataclass(frozen=True)
class Framing:
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in portrait pixels
    size: tuple[int, int]  # output width, height

    def to_output(self, points: np.ndarray) -> np.ndarray:
        """Portrait pixel coordinates [K, 2] to output pixel coordinates [K, 2] float32."""
        x0, y0, x1, y1 = self.crop
        scale = np.float32([self.size[0] / (x1 - x0), self.size[1] / (y1 - y0)])
        return ((points - np.float32([x0, y0])) * scale).astype(np.float32)


def choose_framing(portrait_size: tuple[int, int], face_box: tuple[float, float, float, float],
                   size: tuple[int, int]) -> Framing:
    """portrait_size (w, h); face_box (x0, y0, x1, y1) in portrait pixels; size (w, h) of output."""
    pw, ph = portrait_size
    aspect = size[0] / size[1]
    fx0, fy0, fx1, fy1 = face_box
    wanted = max(FRAME_PER_FACE_WIDTH * (fx1 - fx0), FRAME_PER_FACE_HEIGHT * (fy1 - fy0) * aspect)
    crop_w = min(pw, ph * aspect, wanted)
    crop_h = crop_w / aspect
    cx = (fx0 + fx1) / 2
    cy = (fy0 - FOREHEAD * (fy1 - fy0) + fy1) / 2  # centre the head, not just brows-to-chin
    x0 = round(np.clip(cx - crop_w / 2, 0, pw - crop_w))
    y0 = round(np.clip(cy - crop_h / 2, 0, ph - crop_h))
    x1 = min(pw, x0 + max(1, round(crop_w)))
    y1 = min(ph, y0 + max(1, round(crop_h)))
    return Framing((x0, y0, x1, y1), size)


def apply_framing(portrait: np.ndarray, framing: Framing) -> np.ndarray:
    """uint8 [H, W, 3] portrait -> uint8 [size_h, size_w, 3] output background."""
    x0, y0, x1, y1 = framing.crop
    crop = portrait[y0:y1, x0:x1]
    if crop.shape[1::-1] == framing.size:
        return np.ascontiguousarray(crop)
    shrinking = framing.size[0] < crop.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(crop, framing.size, interpolation=interpolation)
