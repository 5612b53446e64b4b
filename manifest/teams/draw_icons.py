"""Draws the Teams app's two icons next to this file: ``python manifest/teams/draw_icons.py``.

A development script, not part of the service (nothing in ``bots/`` or ``core/`` imports it, so it
ships in no Lambda package): the icons are committed, and ``chatbot teams-package`` only copies
them. Drawing them from code keeps them reviewable and reproducible; a test checks that the
committed files are what this script draws.

A tiny stdlib PNG writer and an anti-aliased rasterizer of a few shapes is all it takes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(width: int, height: int, rgba: bytes) -> bytes:
    """An 8-bit RGBA PNG, every row with filter type 0 (none): small enough for icons."""
    stride = width * 4
    if len(rgba) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGBA, got {len(rgba)}")
    raw = b"".join(b"\x00" + rgba[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def draw_color_icon() -> bytes:
    """192x192: a white speech bubble with three orange dots on the accent colour, full bleed.

    The glyph stays inside the central area Teams leaves uncropped when it rounds the corners.
    """
    bubble = _union(
        _rounded_rect(0.22, 0.26, 0.78, 0.64, 0.09),
        _triangle((0.32, 0.6), (0.47, 0.6), (0.29, 0.77)),
    )
    dots = _union(*(_circle(x, 0.45, 0.045) for x in (0.37, 0.5, 0.63)))
    layers = [(bubble, (255, 255, 255)), (dots, (255, 153, 0))]
    return encode_png(192, 192, _render(192, layers, (0x23, 0x2F, 0x3E), samples=4))


def draw_outline_icon() -> bytes:
    """32x32: the same bubble as a white outline on transparency (Teams' rule for this icon)."""
    outer = _union(
        _rounded_rect(2 / 32, 4 / 32, 30 / 32, 22 / 32, 4 / 32),
        _triangle((7 / 32, 21 / 32), (14 / 32, 21 / 32), (6 / 32, 29 / 32)),
    )
    inner = _union(
        _rounded_rect(4 / 32, 6 / 32, 28 / 32, 20 / 32, 2.5 / 32),
        _triangle((8.6 / 32, 19 / 32), (12 / 32, 19 / 32), (8.1 / 32, 24.5 / 32)),
    )
    dots = _union(*(_circle(x / 32, 13 / 32, 1.7 / 32) for x in (10.5, 16, 21.5)))
    glyph = _union(_difference(outer, inner), dots)
    return encode_png(32, 32, _render(32, [(glyph, (255, 255, 255))], None, samples=8))


def write_icons(manifest_dir: Path = HERE) -> None:
    """Regenerate ``color.png`` and ``outline.png`` next to the manifest."""
    (manifest_dir / "color.png").write_bytes(draw_color_icon())
    (manifest_dir / "outline.png").write_bytes(draw_outline_icon())


# --- the icon drawing ---------------------------------------------------------------------

# A shape answers "is this point inside?" for coordinates in the unit square, y downwards.
Shape = Callable[[float, float], bool]
Layer = tuple[Shape, tuple[int, int, int]]


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, radius: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return False
        nearest_x = min(max(x, x0 + radius), x1 - radius)
        nearest_y = min(max(y, y0 + radius), y1 - radius)
        return (x - nearest_x) ** 2 + (y - nearest_y) ** 2 <= radius * radius

    return inside


def _circle(cx: float, cy: float, radius: float) -> Shape:
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius


def _triangle(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> Shape:
    def side(p: tuple[float, float], q: tuple[float, float], x: float, y: float) -> float:
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

    def inside(x: float, y: float) -> bool:
        d1, d2, d3 = side(a, b, x, y), side(b, c, x, y), side(c, a, x, y)
        return (d1 >= 0 and d2 >= 0 and d3 >= 0) or (d1 <= 0 and d2 <= 0 and d3 <= 0)

    return inside


def _union(*shapes: Shape) -> Shape:
    return lambda x, y: any(shape(x, y) for shape in shapes)


def _difference(shape: Shape, hole: Shape) -> Shape:
    return lambda x, y: shape(x, y) and not hole(x, y)


def _render(
    size: int,
    layers: Sequence[Layer],
    background: tuple[int, int, int] | None,
    *,
    samples: int,
) -> bytes:
    """RGBA bytes: each layer's colour composited over the last, weighted by its coverage of
    ``samples`` x ``samples`` points per pixel (anti-aliased edges). Without a background the
    pixels start fully transparent, and transparent pixels keep the first layer's colour, so
    an icon drawn in one colour contains no other colour at all."""
    offsets = [(i + 0.5) / samples for i in range(samples)]
    start_rgb = background if background is not None else layers[0][1]
    start_alpha = 1.0 if background is not None else 0.0
    out = bytearray()
    for row in range(size):
        for column in range(size):
            rgb = [float(channel) for channel in start_rgb]
            alpha = start_alpha
            for shape, color in layers:
                hits = sum(
                    shape((column + dx) / size, (row + dy) / size)
                    for dy in offsets
                    for dx in offsets
                )
                coverage = hits / (samples * samples)
                if coverage == 0:
                    continue
                blended = coverage + alpha * (1 - coverage)
                rgb = [
                    (new * coverage + old * alpha * (1 - coverage)) / blended
                    for new, old in zip(color, rgb, strict=True)
                ]
                alpha = blended
            out += bytes(round(channel) for channel in rgb) + bytes([round(alpha * 255)])
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


if __name__ == "__main__":
    write_icons()
