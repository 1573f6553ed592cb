"""68-point face landmarks from dlib, with the models that ship inside PyPI wheels.

The HOG frontal face detector is built into dlib; the 68-point shape predictor is the file in the
`face-recognition-models` package. We locate that package's folder without importing it (its
__init__ needs pkg_resources), so nothing is downloaded at run time.

Point indices (iBUG 300-W): jaw 0-16, brows 17-26, nose 27-35, eyes 36-41 and 42-47,
outer lips 48-59, inner lips 60-67.
"""
from __future__ import annotations

import importlib.util
import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.backends.base import BackendUnavailable

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 800  # larger images are scaled down for the (slow) face detector
UPSAMPLE_RETRIES = (0, 1)  # try the detector at native scale, then upsampled once (small faces)
DETECTOR_WINDOW_PX = 80  # dlib's HOG detector sees faces of at least its 80x80 window, halved per upsample
_detector_lock = threading.Lock()  # a portrait check and a session opening may detect at the same time

INNER_GAP_PAIRS = ((61, 67), (62, 66), (63, 65))  # upper / lower inner-lip points facing each other
EYE_OUTER_CORNERS = (36, 45)


def predictor_path() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("the puppet backend needs the face landmark model: "
                                 "pip install face-recognition-models")
    path = Path(spec.submodule_search_locations[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise BackendUnavailable(f"face landmark model missing ({path}): "
                                 "pip install --force-reinstall face-recognition-models")
    return path


@lru_cache(maxsize=1)
def load_face_models():
    """(detector, predictor), loaded once per process (the predictor file is ~100 MB)."""
    try:
        import dlib
    except ImportError:
        raise BackendUnavailable("the puppet backend needs dlib: pip install dlib-bin") from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor_path()))


def detect_face_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Largest frontal face in an RGB uint8 [H, W, 3] image as (x0, y0, x1, y1), or None."""
    detector, _ = load_face_models()
    scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
    small = image if scale == 1.0 else _downscale(image, scale)
    small = np.ascontiguousarray(small)
    for upsample in UPSAMPLE_RETRIES:
        with _detector_lock:
            rects = detector(small, upsample)
        if len(rects):
            best = max(rects, key=lambda r: r.width() * r.height())
            return tuple(round(v / scale) for v in (best.left(), best.top(), best.right(), best.bottom()))
    return None


def smallest_face_px(width: int, height: int) -> int:
    """The narrowest face `detect_face_box` can find in a width x height image."""
    scale = min(1.0, DETECT_MAX_SIDE / max(width, height))
    return math.ceil(DETECTOR_WINDOW_PX / 2 ** max(UPSAMPLE_RETRIES) / scale)


def landmarks_in_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """68 landmarks [68, 2] float32 (x, y) of the face inside `box` (x0, y0, x1, y1)."""
    import dlib
    _, predictor = load_face_models()
    with _detector_lock:
        shape = predictor(np.ascontiguousarray(image), dlib.rectangle(*(int(v) for v in box)))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """68 landmarks [68, 2] float32 of the largest face in an RGB uint8 [H, W, 3] image, or None."""
    box = detect_face_box(image)
    return None if box is None else landmarks_in_box(image, box)


def face_scale(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners: a face size that mouth motion does not change."""
    a, b = EYE_OUTER_CORNERS
    return float(np.linalg.norm(landmarks[a] - landmarks[b]))


def mouth_opening(landmarks: np.ndarray) -> float:
    """Mean inner-lip gap normalised by face size (0 = lips closed, ~0.3 = wide open)."""
    gaps = [np.linalg.norm(landmarks[top] - landmarks[bottom]) for top, bottom in INNER_GAP_PAIRS]
    return float(np.mean(gaps)) / max(face_scale(landmarks), 1e-6)


def _downscale(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)
