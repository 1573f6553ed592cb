"""Paints what shows between parted lips: a dark cavity, a band of upper teeth, a hint of the
lower teeth, lit to match the portrait. The warp leaves that gap as smeared lip-edge pixels; this
covers it, feathered by a pixel so the lip edges stay soft.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.backends.puppet.face_landmarks import INNER_GAP_PAIRS
from engine.backends.puppet.face_rig import MouthGap

POLY_SHIFT = 4  # cv2.fillPoly fixed-point bits: sub-pixel polygon edges
CHEEK_POINTS = [1, 2, 3, 31, 33, 35, 13, 14, 15, 29]  # a skin patch for the lighting estimate
REFERENCE_SKIN_LUMA = 165.0  # skin brightness the default colours were picked for


@dataclass(frozen=True)
class MouthInteriorConfig:
    cavity_rgb: tuple[int, int, int] = (92, 38, 40)  # just inside the lips
    throat_rgb: tuple[int, int, int] = (22, 8, 10)  # deep inside
    tongue_rgb: tuple[int, int, int] = (150, 68, 72)
    teeth_rgb: tuple[int, int, int] = (222, 214, 200)
    teeth_height: float = 0.12  # upper teeth band, fraction of the mouth width
    teeth_span: float = 0.8  # share of the gap's width the teeth cover
    tongue_width: float = 0.55  # share of the gap's width
    tongue_height: float = 0.35  # share of the gap's height, from the bottom
    lower_teeth_height: float = 0.25  # relative to the upper band
    lower_teeth_shade: float = 0.7
    lower_teeth_opacity: float = 0.6
    max_teeth_share: float = 0.45  # the teeth never fill more than this of the gap's height
    feather_px: float = 0.7


class MouthInterior:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray, config: MouthInteriorConfig | None = None):
        """image: uint8 RGB [H, W, 3], the framed portrait; landmarks [68, 2] in its pixels."""
        self.config = c = config or MouthInteriorConfig()
        light = float(np.clip(_skin_luma(image, landmarks) / REFERENCE_SKIN_LUMA, 0.45, 1.15))
        self._cavity = np.float32(c.cavity_rgb) * light
        self._throat = np.float32(c.throat_rgb) * light
        self._tongue = np.float32(c.tongue_rgb) * light
        self._teeth = np.minimum(np.float32(c.teeth_rgb) * light, 255)
        mouth_width = float(np.linalg.norm(landmarks[54] - landmarks[48]))
        rest_gap = float(np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in INNER_GAP_PAIRS]))
        # teeth already visible between the portrait's lips stay above the new gap; paint only
        # the part of a normal teeth band they do not already show
        self._teeth_px = max(0.0, c.teeth_height * mouth_width - rest_gap)
        self._lower_teeth_px = c.lower_teeth_height * c.teeth_height * mouth_width

    def draw(self, pixels: np.ndarray, origin: tuple[int, int], gap: MouthGap) -> None:
        """Composite in place. pixels: uint8 [h, w, 3] whose (0, 0) is frame pixel `origin`."""
        if gap.upper.shape[0] < 2 or gap.opening_px < 0.5:
            return
        upper = gap.upper - np.float32(origin)
        lower = gap.lower - np.float32(origin)
        polygon = np.concatenate([upper, lower[::-1]])
        h, w = pixels.shape[:2]
        x0, y0 = np.maximum(np.floor(polygon.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(polygon.max(axis=0)).astype(int) + 3, (w, h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = np.rint((polygon - (x0, y0)) * (1 << POLY_SHIFT)).astype(np.int32)
        cv2.fillPoly(alpha, [fixed], 255, cv2.LINE_AA, POLY_SHIFT)
        alpha = cv2.GaussianBlur(alpha.astype(np.float32) / 255, (0, 0), self.config.feather_px)
        colour = self._colour(upper - (x0, y0), lower - (x0, y0), alpha.shape, gap.opening_px)
        patch = pixels[y0:y1, x0:x1].astype(np.float32)
        patch += alpha[..., None] * (colour - patch)
        pixels[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)

    def _colour(self, upper: np.ndarray, lower: np.ndarray, shape: tuple[int, int],
                opening_px: float) -> np.ndarray:
        """RGB float32 [h, w, 3] of the interior for a gap whose edges are given per column."""
        c = self.config
        xs = np.arange(shape[1], dtype=np.float32)
        ys = np.arange(shape[0], dtype=np.float32)[:, None]  # [h, 1]
        top = np.interp(xs, upper[:, 0], upper[:, 1])  # [w]
        bottom = np.interp(xs, lower[:, 0], lower[:, 1])
        height = np.maximum(bottom - top, 1e-3)
        left, right = upper[0, 0], upper[-1, 0]
        u = np.clip((xs - (left + right) / 2) / max((right - left) / 2, 1.0), -1, 1)  # [w] -1..1
        from_top, from_bottom = ys - top, bottom - ys  # [h, w]
        centred = np.clip(np.minimum(from_top, from_bottom) / (0.5 * height), 0, 1)  # 1 mid-gap
        depth = np.sqrt(centred) * (1 - 0.5 * u ** 2)
        colour = self._cavity + depth[..., None] * (self._throat - self._cavity)
        # tongue: a soft dome rising from the bottom edge in the middle, in shadow near the top
        dome = 1 - (u / c.tongue_width) ** 2
        tongue = np.clip((dome * c.tongue_height * height - from_bottom) / (0.15 * height + 1), 0, 1)
        colour += (0.8 * tongue)[..., None] * (self._tongue * (1 - 0.5 * depth[..., None]) - colour)
        span = np.clip((c.teeth_span - np.abs(u)) / 0.15, 0, 1)  # teeth fade out toward corners
        shade = (1 - 0.4 * u ** 2)[..., None]  # teeth recede into the dark at the sides
        teeth_h = np.minimum(self._teeth_px * span, c.max_teeth_share * height)
        upper_teeth = np.clip(teeth_h - from_top + 0.5, 0, 1)[..., None]
        colour += upper_teeth * (self._teeth * shade - colour)
        show_lower = float(np.clip(opening_px / max(self._lower_teeth_px * 3, 1.0) - 0.5, 0, 1))
        lower_h = np.minimum(self._lower_teeth_px * span * show_lower, 0.25 * height)
        lower_teeth = c.lower_teeth_opacity * np.clip(lower_h - from_bottom + 0.5, 0, 1)[..., None]
        colour += lower_teeth * (self._teeth * shade * c.lower_teeth_shade - colour)
        return colour


def _skin_luma(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Median brightness (BT.601 luma) of the skin around nose and cheeks."""
    mask = np.zeros(image.shape[:2], np.uint8)
    hull = cv2.convexHull(np.rint(landmarks[CHEEK_POINTS]).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    skin = image[mask > 0].astype(np.float32)
    if skin.size == 0:
        return REFERENCE_SKIN_LUMA
    return float(np.median(skin @ np.float32([0.299, 0.587, 0.114])))
