"""Procedural item images for the synthetic dataset (Pillow).

An item's picture carries its topics: the background hue and the main shape come from the
primary topic, the colour of a smaller second shape from the secondary topic; position, size
and a little colour jitter are random. An image encoder therefore sees real topic signal.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring", "bars", "star")


def topic_colour(topic: int, num_topics: int, lightness: float = 0.5) -> tuple[int, int, int]:
    """A hue per topic, evenly spaced on the colour wheel."""
    r, g, b = colorsys.hls_to_rgb((topic / max(num_topics, 1)) % 1.0, lightness, 0.75)
    return int(r * 255), int(g * 255), int(b * 255)


def _jitter(colour: tuple[int, int, int], delta: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(c + d, 0, 255)) for c, d in zip(colour, delta, strict=True))
    return r, g, b


def _shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float,
           fill: tuple[int, int, int]) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=fill)
    elif kind == "square":
        draw.rectangle(box, fill=fill)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif kind == "cross":
        w = r / 3
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif kind == "ring":
        draw.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    elif kind == "bars":
        for k in range(3):
            x = cx - r + k * r * 0.8
            draw.rectangle((x, cy - r, x + r * 0.4, cy + r), fill=fill)
    else:  # star: two overlaid triangles
        draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.6), (cx - r, cy + r * 0.6)], fill=fill)
        draw.polygon([(cx, cy + r), (cx + r, cy - r * 0.6), (cx - r, cy - r * 0.6)], fill=fill)


def draw_item(primary: int, secondary: int, num_topics: int, size: int,
              rng: np.random.Generator) -> Image.Image:
    """One item picture [size x size RGB] from its primary and secondary topic."""
    background = _jitter(topic_colour(primary, num_topics, 0.85), rng.integers(-12, 13, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    main = _jitter(topic_colour(primary, num_topics, 0.4), rng.integers(-20, 21, 3))
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    _shape(draw, SHAPES[primary % len(SHAPES)], cx, cy, size * rng.uniform(0.2, 0.3), main)
    accent = topic_colour(secondary, num_topics, 0.45)
    ax, ay = rng.uniform(0.15, 0.85, 2) * size
    _shape(draw, SHAPES[secondary % len(SHAPES)], ax, ay, size * 0.1, accent)
    return image


def draw_items(directory: Path, names: list[str], primary: np.ndarray, secondary: np.ndarray,
               num_topics: int, size: int, seed: int) -> list[str]:
    """Draw and save one PNG per item under ``directory``; returns the file names."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for name, p, s in zip(names, primary.tolist(), secondary.tolist(), strict=True):
        file = f"{name}.png"
        draw_item(p, s, num_topics, size, rng).save(directory / file, optimize=False)
        files.append(file)
    return files
