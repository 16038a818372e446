"""Step 2: rasterise scenes into images, instance / semantic masks and boxes."""
import math
from typing import List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .scene import Background, Scene, SceneObject, get_classnames

_CIRCLE_VERTICES = 48
_SUPERSAMPLE = 2


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices of a shape inscribed in the square ``[-0.5, 0.5]^2``."""
    if shape == 'circle':
        t = np.linspace(0, 2 * np.pi, _CIRCLE_VERTICES, endpoint=False)
        return np.stack([0.5 * np.cos(t), 0.5 * np.sin(t)], 1)
    if shape == 'square':
        return np.array([[-.5, -.5], [.5, -.5], [.5, .5], [-.5, .5]]) * 0.9
    if shape == 'triangle':
        # Equilateral, base at the bottom, centred on its bounding box.
        h = math.sqrt(3) / 2
        return np.array([[0.0, -h / 2], [0.5, h / 2], [-0.5, h / 2]])
    if shape == 'cross':
        a, b = 1 / 6, 0.5
        return np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b],
                         [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]])
    raise ValueError(f'Unknown shape {shape!r}')


def object_polygon(obj: SceneObject, size: int) -> List[Tuple[float, float]]:
    """Vertices of an object in pixel coordinates of a ``size x size`` image.

    Args:
        obj (SceneObject): The object.
        size (int): Image side in pixels.

    Returns:
        list[tuple[float, float]]: Polygon vertices ``(x, y)``.
    """
    pts = _unit_polygon(obj.shape) * obj.scale
    t = math.radians(obj.angle)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    pts = pts @ rot + np.array([obj.cx, obj.cy])
    pts = pts * size
    return [(float(x), float(y)) for x, y in pts]


def _object_mask(obj: SceneObject, size: int) -> np.ndarray:
    img = Image.new('L', (size, size), 0)
    ImageDraw.Draw(img).polygon(object_polygon(obj, size), fill=1)
    return np.asarray(img, dtype=bool)


def _mask_to_bbox(mask: np.ndarray) -> List[int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]


def object_bbox(obj: SceneObject, size: int) -> List[int]:
    """Tight pixel box of an object's (unoccluded) mask.

    Args:
        obj (SceneObject): The object.
        size (int): Image side in pixels.

    Returns:
        list[int]: COCO-style ``[x, y, w, h]`` (top-left corner, width, height).
    """
    return _mask_to_bbox(_object_mask(obj, size))


def _render_background(bg: Background, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c1 = np.asarray(bg.colours[0], np.float32)
    c2 = np.asarray(bg.colours[-1], np.float32)
    t = math.radians(bg.angle)
    proj = xx * math.cos(t) + yy * math.sin(t)
    if bg.kind in ('plain', 'noise'):
        w = np.zeros_like(xx)
    elif bg.kind == 'stripes':
        w = (np.floor(proj / (bg.period / 2)) % 2).astype(np.float32)
    elif bg.kind == 'checker':
        w = ((np.floor(xx / bg.period) + np.floor(yy / bg.period)) % 2).astype(
            np.float32)
    elif bg.kind == 'gradient':
        w = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    else:
        raise ValueError(f'Unknown background {bg.kind!r}')
    img = c1 * (1 - w[..., None]) + c2 * w[..., None]
    noise = np.random.default_rng(bg.noise_seed).normal(
        0, bg.noise_sigma, size=(size, size, 1)).astype(np.float32)
    img = img + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_scene(scene: Scene,
                 size: int,
                 supersample: int = _SUPERSAMPLE) -> Image.Image:
    """Rasterise a scene into an RGB image.

    Objects are drawn at ``supersample`` times the resolution and box-filtered
    down for anti-aliased edges.

    Args:
        scene (Scene): The scene.
        size (int): Output image side in pixels.
        supersample (int): Supersampling factor for the objects. Defaults to 2.

    Returns:
        PIL.Image.Image: An RGB ``size x size`` image.
    """
    bg = Image.fromarray(_render_background(scene.background, size), 'RGB')
    big = size * supersample
    canvas = bg.resize((big, big), Image.NEAREST) if supersample > 1 else bg
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        draw.polygon(object_polygon(obj, big), fill=tuple(obj.rgb))
    if supersample > 1:
        canvas = canvas.reduce(supersample)
    return canvas


def render_instance_masks(scene: Scene, size: int) -> List[np.ndarray]:
    """Rasterise the visible mask of each object (later objects occlude earlier).

    Args:
        scene (Scene): The scene.
        size (int): Mask side in pixels.

    Returns:
        list[np.ndarray]: One ``(size, size)`` bool array per object, in the order
        of ``scene.objects``.
    """
    masks = [_object_mask(obj, size) for obj in scene.objects]
    visible = []
    for i, m in enumerate(masks):
        for later in masks[i + 1:]:
            m = m & ~later
        visible.append(m)
    return visible


def render_semantic_mask(scene: Scene, size: int) -> np.ndarray:
    """Rasterise a semantic mask: ``0`` = background, ``k + 1`` = class ``k``.

    Args:
        scene (Scene): The scene.
        size (int): Mask side in pixels.

    Returns:
        np.ndarray: A ``(size, size)`` uint8 array of indices into
        ``['background'] + get_classnames()``.
    """
    classes = get_classnames()
    sem = np.zeros((size, size), np.uint8)
    for obj, m in zip(scene.objects, render_instance_masks(scene, size)):
        sem[m] = classes.index(obj.category) + 1
    return sem
