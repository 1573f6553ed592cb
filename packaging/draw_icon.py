"""Draws the FlashTalk Studio icon (a speaking face with sound waves) as SVG and PNG.

One geometry feeds both files, so the scalable and the bitmap icon never drift apart.
Run: python packaging/draw_icon.py   (rewrites packaging/flashtalk-studio.{svg,png})
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 256  # icon units; the PNG is drawn at this size
PNG_SIZE = 256
SUPERSAMPLE = 4  # PIL has no anti-aliasing: draw large, then shrink

BACKGROUND = {"box": (16, 16, 240, 240), "radius": 48, "fill": "#1f3b63"}
HEAD = {"center": (100, 128), "radius": 64, "fill": "#f2c094"}
EYES = {"centers": ((80, 112), (120, 112)), "radius": 8, "fill": "#1f3b63"}
MOUTH = {"box": (82, 146, 118, 172), "fill": "#8a2a3b"}
WAVES = {"center": (128, 128), "radii": (60, 84), "half_angle": 35, "width": 10, "stroke": "#7fd3ff"}


def svg_text() -> str:
    x0, y0, x1, y1 = BACKGROUND["box"]
    (hx, hy), hr = HEAD["center"], HEAD["radius"]
    mx0, my0, mx1, my1 = MOUTH["box"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}">',
        "  <title>FlashTalk Studio</title>",
        f'  <rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" rx="{BACKGROUND["radius"]}" '
        f'fill="{BACKGROUND["fill"]}"/>',
        f'  <circle cx="{hx}" cy="{hy}" r="{hr}" fill="{HEAD["fill"]}"/>',
        *(f'  <circle cx="{ex}" cy="{ey}" r="{EYES["radius"]}" fill="{EYES["fill"]}"/>'
          for ex, ey in EYES["centers"]),
        f'  <ellipse cx="{(mx0 + mx1) / 2:g}" cy="{(my0 + my1) / 2:g}" rx="{(mx1 - mx0) / 2:g}" '
        f'ry="{(my1 - my0) / 2:g}" fill="{MOUTH["fill"]}"/>',
    ]
    (cx, cy), a = WAVES["center"], math.radians(WAVES["half_angle"])
    for r in WAVES["radii"]:
        sx, sy = cx + r * math.cos(-a), cy + r * math.sin(-a)
        ex, ey = cx + r * math.cos(a), cy + r * math.sin(a)
        parts.append(f'  <path d="M {sx:.2f} {sy:.2f} A {r} {r} 0 0 1 {ex:.2f} {ey:.2f}" fill="none" '
                     f'stroke="{WAVES["stroke"]}" stroke-width="{WAVES["width"]}" stroke-linecap="round"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def draw_png(size: int = PNG_SIZE) -> Image.Image:
    scale = size * SUPERSAMPLE / SIZE
    big = Image.new("RGBA", (size * SUPERSAMPLE,) * 2, (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)

    def box(b):
        return tuple(round(v * scale) for v in b)

    def circle(center, r):
        return box((center[0] - r, center[1] - r, center[0] + r, center[1] + r))

    draw.rounded_rectangle(box(BACKGROUND["box"]), radius=round(BACKGROUND["radius"] * scale),
                           fill=BACKGROUND["fill"])
    draw.ellipse(circle(HEAD["center"], HEAD["radius"]), fill=HEAD["fill"])
    for center in EYES["centers"]:
        draw.ellipse(circle(center, EYES["radius"]), fill=EYES["fill"])
    draw.ellipse(box(MOUTH["box"]), fill=MOUTH["fill"])
    half, width = WAVES["width"] / 2, round(WAVES["width"] * scale)
    for r in WAVES["radii"]:
        draw.arc(circle(WAVES["center"], r + half), start=-WAVES["half_angle"],
                 end=WAVES["half_angle"], fill=WAVES["stroke"], width=width)
    return big.resize((size, size), Image.LANCZOS)


def main() -> None:
    (HERE / "flashtalk-studio.svg").write_text(svg_text())
    draw_png().save(HERE / "flashtalk-studio.png", optimize=True)


if __name__ == "__main__":
    main()
