"""Warps the portrait's face: jaw drop, lip stretch and pucker, eyelid blinks, small head motion.

Everything is a backward map (for each output pixel, where to read the portrait) built only over
a region of interest around the face, so pixels outside it stay exactly as in the portrait.
The chain, from an output pixel p back to the portrait:
  head   p -> q  a small affine (roll, shift, breathing scale) weighted by a feathered face mask
  lips   q += wide * S(p) + round * R(p)   precomputed smooth displacement fields
  jaw    per column: rows below the lower lip's inner edge move down (the lips part there; the
         gap is covered by the mouth interior), the chin follows, the neck absorbs the drop
  eyes   per column: the upper lid slides down over the eye, the skin above it stretches
then one cv2.remap. Jaw and eyelids are piecewise linear in y per column, evaluated exactly each
frame; lips and head are small and smooth, so their additive approximation is invisible.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.backends.puppet.face_landmarks import face_scale

# Landmark indices used here (iBUG 68).
JAW_CONTOUR = list(range(3, 14))  # lower jaw, left to right in the image
INNER_UPPER = [60, 61, 62, 63, 64]
INNER_LOWER = [60, 67, 66, 65, 64]
MOUTH_LINE = [48, 60, 64, 54]  # outer corner, inner corners, outer corner
EYES = (  # (upper lid, lower lid, brow) left to right in the image
    ([36, 37, 38, 39], [36, 41, 40, 39], [17, 18, 19, 20, 21]),
    ([42, 43, 44, 45], [42, 47, 46, 45], [22, 23, 24, 25, 26]),
)


@dataclass(frozen=True)
class RigConfig:
    roi_margin: float = 0.25  # warped region: landmark box grown by this fraction on each side
    jaw_drop: float = 0.19  # lower-lip centre travel at jaw=1, fraction of the face scale
    chin_follow: float = 0.7  # chin travel relative to the lower lip's
    neck_fade: float = 0.32  # rows below the chin that absorb its travel, fraction of face scale
    stretch: float = 0.07  # each corner's outward travel at wide=1, fraction of mouth width
    pucker: float = 0.08  # each corner's inward travel at round=1, fraction of mouth width
    lid_fold: float = 0.45  # share of the lid-to-brow skin that slides down in a blink
    head_feather: float = 0.2  # blur of the head mask, fraction of the face scale
    head_pivot_below_chin: float = 0.3  # roll pivot (neck), fraction of the face scale


@dataclass
class Expression:
    """One frame's rig controls."""

    jaw: float = 0.0
    wide: float = 0.0
    round: float = 0.0
    blink: float = 0.0
    roll_deg: float = 0.0
    shift_x: float = 0.0  # fraction of the face scale
    shift_y: float = 0.0
    scale: float = 1.0


@dataclass
class MouthGap:
    """Where the lips parted this frame, in output frame pixels (each [K, 2] x, y)."""

    upper: np.ndarray
    lower: np.ndarray
    opening_px: float  # the centre's gap


@dataclass
class ColumnBand:
    """A rectangle of the region of interest where a per-column map acts: rows r0:r1, cols c0:c1."""

    r0: int
    r1: int
    c0: int
    c1: int


class FaceRig:
    def __init__(self, image: np.ndarray, landmarks: np.ndarray, config: RigConfig | None = None):
        """image: uint8 RGB [H, W, 3] (the framed portrait); landmarks: [68, 2] in its pixels."""
        self.config = config or RigConfig()
        self.image = np.ascontiguousarray(image)
        self.landmarks = landmarks.astype(np.float32)
        self.scale = face_scale(self.landmarks)
        self.roi = self._region_of_interest()
        x0, y0, x1, y1 = self.roi
        self._x = np.arange(x0, x1, dtype=np.float32)  # [w] frame x of each ROI column
        self._y = np.arange(y0, y1, dtype=np.float32)  # [h]
        self._grid_x, self._grid_y = np.meshgrid(self._x, self._y)  # each [h, w]
        self._taper = self._edge_taper()
        self._build_head_mask()
        self._build_lip_fields()
        self._build_jaw_columns()
        self._eyes = [self._build_eye_columns(*eye) for eye in EYES]

    # --- per frame ----------------------------------------------------------------------------

    def warp(self, expr: Expression) -> tuple[np.ndarray, MouthGap]:
        """The ROI of the output frame, uint8 [h, w, 3], and where the lips parted."""
        forward, inverse = self._head_affines(expr)
        qx, qy = self._head_and_lips(expr, inverse)
        jaw_px = float(expr.jaw) * self._jaw_px
        if jaw_px > 0:
            self._apply_jaw(qx, qy, jaw_px)
        if expr.blink > 0:
            for eye in self._eyes:
                self._apply_blink(qx, qy, eye, float(expr.blink))
        pixels = cv2.remap(self.image, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return pixels, self._mouth_gap(expr, jaw_px, forward)

    def _head_affines(self, expr: Expression) -> tuple[np.ndarray, np.ndarray]:
        """Forward and inverse [2, 3] head affines: roll and breathing about the neck, then shift."""
        pivot = (float(self._pivot[0]), float(self._pivot[1]))
        forward = cv2.getRotationMatrix2D(pivot, float(expr.roll_deg), float(expr.scale))
        forward[:, 2] += (expr.shift_x * self.scale, expr.shift_y * self.scale)
        return forward, cv2.invertAffineTransform(forward)

    def _head_and_lips(self, expr: Expression, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q = p + mask * (inverse(p) - p), plus the lip fields. Each [h, w] float32."""
        a = inverse.astype(np.float32)
        m, mx, my = self._head_mask, self._head_mx, self._head_my
        qx = self._grid_x + (a[0, 0] - 1) * mx + a[0, 1] * my + a[0, 2] * m
        qy = self._grid_y + a[1, 0] * mx + (a[1, 1] - 1) * my + a[1, 2] * m
        if expr.wide:
            qx += np.float32(expr.wide) * self._stretch_x
        if expr.round:
            qx += np.float32(expr.round) * self._round_x
            qy += np.float32(expr.round) * self._round_y
        return qx, qy

    def _columns(self, qx: np.ndarray, band: ColumnBand) -> np.ndarray:
        """ROI column index [rows, cols] of each band pixel's face-frame x (after head motion)."""
        col = np.rint(qx[band.r0:band.r1, band.c0:band.c1]).astype(np.int32) - self.roi[0]
        return np.clip(col, 0, self._x.size - 1)

    def _apply_jaw(self, qx: np.ndarray, qy: np.ndarray, jaw_px: float) -> None:
        """In place on qy: undo the jaw drop (piecewise linear in y per column)."""
        b = self._jaw_band
        col = self._columns(qx, b)
        y = qy[b.r0:b.r1, b.c0:b.c1]
        tear, chin, neck = self._tear[col], self._chin[col], self._neck[col]
        lip = jaw_px * self._lip_drop[col]
        chin_d = np.minimum(jaw_px * self._chin_drop[col], 0.7 * (neck - chin))
        span = chin - tear  # source rows between the parted lip edge and the chin
        lower_lip = tear + np.maximum(y - tear - lip, 0) * span / np.maximum(span + chin_d - lip, 1.0)
        neck_rows = chin + (y - chin - chin_d) * (neck - chin) / (neck - chin - chin_d)
        y[...] = np.where(y <= tear, y, np.where(y < chin + chin_d, lower_lip,
                                                 np.where(y < neck, neck_rows, y)))

    def _apply_blink(self, qx: np.ndarray, qy: np.ndarray, eye, closure: float) -> None:
        """In place on qy: the upper lid edge moves down to `closure` of the way to the lower lid."""
        fold, lid_top, lid_bottom, b = eye
        col = self._columns(qx, b)
        y = qy[b.r0:b.r1, b.c0:b.c1]
        f, top = fold[col], lid_top[col]
        edge = top + closure * (lid_bottom[col] - top)
        stretched = f + (y - f) * (top - f) / np.maximum(edge - f, 1e-3)
        y[...] = np.where((y >= f) & (y < edge), stretched, y)

    def _mouth_gap(self, expr: Expression, jaw_px: float, forward: np.ndarray) -> MouthGap:
        """Upper and lower edge of the parted lips, moved through the lip and head motion."""
        cols = np.flatnonzero(self._lip_drop > 0)
        if jaw_px <= 0 or cols.size == 0:
            empty = np.zeros((0, 2), np.float32)
            return MouthGap(empty, empty, 0.0)
        cols = np.unique(np.concatenate([[max(cols[0] - 1, 0)], cols[::max(1, cols.size // 16)],
                                         [min(cols[-1] + 1, self._x.size - 1)]]))
        x, tear = self._x[cols], self._tear[cols]
        edges = []
        for y in (tear, tear + jaw_px * self._lip_drop[cols]):
            edges.append(self._forward(expr, forward, np.stack([x, y], axis=1)))
        return MouthGap(edges[0], edges[1], jaw_px)

    def _forward(self, expr: Expression, forward: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Face-frame points [K, 2] to output pixels: lips then head motion (nearest-grid fields)."""
        x0, y0, x1, y1 = self.roi
        c = np.clip(np.rint(points[:, 0]).astype(int) - x0, 0, x1 - x0 - 1)
        r = np.clip(np.rint(points[:, 1]).astype(int) - y0, 0, y1 - y0 - 1)
        out = points.astype(np.float32).copy()
        out[:, 0] -= expr.wide * self._stretch_x[r, c] + expr.round * self._round_x[r, c]
        out[:, 1] -= expr.round * self._round_y[r, c]
        moved = out @ forward[:, :2].T + forward[:, 2]
        return out + self._head_mask[r, c, None] * (moved - out)

    # --- precomputation ------------------------------------------------------------------------

    def _region_of_interest(self) -> tuple[int, int, int, int]:
        h, w = self.image.shape[:2]
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        pad = (hi - lo) * self.config.roi_margin
        x0, y0 = np.maximum(np.floor(lo - pad), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(hi + pad), (w, h)).astype(int)
        return int(x0), int(y0), int(x1), int(y1)

    def _edge_taper(self) -> np.ndarray:
        """[h, w] 1 inside, falling smoothly to 0 at the ROI border (where the frame is untouched)."""
        x0, y0, x1, y1 = self.roi
        border = max(4.0, 0.12 * min(x1 - x0, y1 - y0))
        tx = _smoothstep(np.minimum(self._x - x0, x1 - 1 - self._x) / border)
        ty = _smoothstep(np.minimum(self._y - y0, y1 - 1 - self._y) / border)
        return (ty[:, None] * tx[None, :]).astype(np.float32)

    def _build_head_mask(self) -> None:
        """Feathered ellipse over the face; the affine head motion is weighted by it."""
        lo, hi = self.landmarks.min(axis=0), self.landmarks.max(axis=0)
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        x0, y0, _, _ = self.roi
        mask = np.zeros(self._grid_x.shape, np.float32)
        cv2.ellipse(mask, (int(centre[0] - x0), int(centre[1] - y0 - 0.1 * half[1])),
                    (int(half[0] * 1.05), int(half[1] * 1.2)), 0, 0, 360, 1.0, -1)
        sigma = self.config.head_feather * self.scale
        mask = cv2.GaussianBlur(mask, (0, 0), sigma) * self._taper
        self._head_mask = mask
        self._head_mx = mask * self._grid_x
        self._head_my = mask * self._grid_y
        self._pivot = self.landmarks[8] + np.float32([0, self.config.head_pivot_below_chin * self.scale])

    def _build_lip_fields(self) -> None:
        """Backward displacement fields [h, w] for lip stretch (S) and pucker (R) at amount 1."""
        p = self.landmarks
        centre = p[48:60].mean(axis=0)
        half_w = float(np.linalg.norm(p[54] - p[48])) / 2
        mouth_h = float(p[57, 1] - p[51, 1])
        sx, sy = half_w, 0.9 * mouth_h + 0.25 * half_w
        dx, dy = self._grid_x - centre[0], self._grid_y - centre[1]
        # dx/sx * bump peaks at the corners (dx = sx) with value exp(-1/2): normalise that to 1
        bump = np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2)) * self._taper / np.exp(-0.5)
        stretch_px = self.config.stretch * 2 * half_w
        pucker_px = self.config.pucker * 2 * half_w
        # backward fields are minus the forward motion: stretch pushes corners out, pucker pulls
        # them in and makes the lips a little taller
        self._stretch_x = (-stretch_px * dx / sx * bump).astype(np.float32)
        self._round_x = (pucker_px * dx / sx * bump).astype(np.float32)
        self._round_y = (-0.5 * pucker_px * dy / sy * bump).astype(np.float32)

    def _build_jaw_columns(self) -> None:
        """Per ROI column: where the lips part, how far lip and chin drop at jaw=1, chin, neck end."""
        p, c, x = self.landmarks, self.config, self._x
        lower_inner = np.interp(x, *_curve(p, INNER_LOWER))
        line = np.interp(x, *_curve(p, MOUTH_LINE))  # constant beyond the outer corners
        left, right = p[60, 0], p[64, 0]
        u = np.clip((x - (left + right) / 2) / max((right - left) / 2, 1.0), -1, 1)
        inside = (x > left) & (x < right)
        self._tear = np.where(inside, lower_inner, line).astype(np.float32)
        self._lip_drop = np.where(inside, np.sqrt(1 - u ** 2), 0).astype(np.float32)
        jx, jy = _curve(p, JAW_CONTOUR)
        self._chin = np.maximum(np.interp(x, jx, jy), self._tear + 2).astype(np.float32)
        # the chin moves fully between jaw points 6..10, not at all beyond 3 / 13
        sides = np.minimum(_smoothstep((x - p[3, 0]) / max(p[6, 0] - p[3, 0], 1)),
                           _smoothstep((p[13, 0] - x) / max(p[13, 0] - p[10, 0], 1)))
        self._chin_drop = (c.chin_follow * sides).astype(np.float32)
        self._lip_drop = np.minimum(self._lip_drop, np.maximum(sides, 0.0))
        bottom = self.roi[3] - 3
        self._neck = np.minimum(self._chin + c.neck_fade * self.scale, bottom).astype(np.float32)
        self._chin = np.minimum(self._chin, self._neck - 2)
        self._jaw_px = c.jaw_drop * self.scale
        cols = np.flatnonzero(sides > 0)
        self._jaw_band = self._band(self._tear.min(), self._neck.max(), cols)

    def _build_eye_columns(self, upper: list[int], lower: list[int], brow: list[int]):
        p, x = self.landmarks, self._x
        lid_top = np.interp(x, *_curve(p, upper)).astype(np.float32)
        lid_bottom = np.maximum(np.interp(x, *_curve(p, lower)), lid_top).astype(np.float32)
        brow_y = np.interp(x, *_curve(p, brow))
        fold = (lid_top - self.config.lid_fold * np.maximum(lid_top - brow_y, 2.0)).astype(np.float32)
        cols = np.flatnonzero((x >= p[upper[0], 0]) & (x <= p[upper[-1], 0]))
        return fold, lid_top, lid_bottom, self._band(fold.min(), lid_bottom.max(), cols)

    def _band(self, top: float, bottom: float, cols: np.ndarray) -> ColumnBand:
        """Rows/cols of the ROI a column map touches, padded for head motion."""
        x0, y0, x1, y1 = self.roi
        pad = int(np.ceil(0.06 * self.scale)) + 2
        r0 = max(0, int(np.floor(top)) - y0 - pad)
        r1 = min(y1 - y0, int(np.ceil(bottom)) - y0 + pad)
        c0 = max(0, int(cols.min()) - pad) if cols.size else 0
        c1 = min(x1 - x0, int(cols.max()) + 1 + pad) if cols.size else 0
        return ColumnBand(r0, r1, c0, c1)


def _curve(points: np.ndarray, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the chosen landmarks sorted by x (for np.interp)."""
    chosen = points[indices]
    order = np.argsort(chosen[:, 0], kind="stable")
    return chosen[order, 0], chosen[order, 1]


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)
