"""Step 1: resolution-independent scenes of coloured shapes (what each image shows)."""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

#: Shape kinds, in class order.
SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'cross')

#: Object colours (name -> nominal RGB), in class order. Saturated, so they stand
#: out from the muted backgrounds.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 35, 35),
    'green': (35, 165, 55),
    'blue': (40, 75, 225),
    'yellow': (240, 215, 30),
}

#: Background kinds.
BACKGROUNDS: Tuple[str, ...] = ('plain', 'noise', 'stripes', 'gradient', 'checker')

#: Named positions on a 3x3 grid: name -> normalised (cx, cy).
POSITIONS: Dict[str, Tuple[float, float]] = {
    'top left': (0.25, 0.25),
    'top': (0.5, 0.25),
    'top right': (0.75, 0.25),
    'left': (0.25, 0.5),
    'centre': (0.5, 0.5),
    'right': (0.75, 0.5),
    'bottom left': (0.25, 0.75),
    'bottom': (0.5, 0.75),
    'bottom right': (0.75, 0.75),
}

_DISTRACTOR_PROB = 0.35
_COUNT_PROBS = (0.6, 0.25, 0.15)  # one, two, three dominant objects
# Normalised side of the bounding square of dominant objects for each count.
_DOMINANT_SCALE = {1: (0.34, 0.5), 2: (0.27, 0.36), 3: (0.25, 0.3)}
_DISTRACTOR_SCALE = (0.14, 0.2)


def get_classnames() -> List[str]:
    """Return the zero-shot class names, ``'<colour> <shape>'``, colour-major.

    Returns:
        list[str]: e.g. ``['red circle', 'red square', ..., 'yellow cross']``.
    """
    return [f'{c} {s}' for c in COLOURS for s in SHAPES]


@dataclass
class SceneObject:
    """One coloured shape, in normalised (resolution-independent) coordinates.

    Args:
        shape (str): One of :data:`SHAPES`.
        colour (str): One of :data:`COLOURS`.
        cx (float): Centre x in ``[0, 1]`` (fraction of the image width).
        cy (float): Centre y in ``[0, 1]``.
        scale (float): Side of the object's bounding square as a fraction of the
            image side.
        angle (float): Rotation in degrees (counter-clockwise).
        rgb (tuple[int]): The (jittered) fill colour.
        is_dominant (bool): Whether the object belongs to the dominant category.
    """
    shape: str
    colour: str
    cx: float
    cy: float
    scale: float
    angle: float
    rgb: Tuple[int, int, int]
    is_dominant: bool = True

    @property
    def category(self) -> str:
        """str: The class name ``'<colour> <shape>'``."""
        return f'{self.colour} {self.shape}'


@dataclass
class Background:
    """A muted, textured background description.

    Args:
        kind (str): One of :data:`BACKGROUNDS`.
        colours (list[tuple[int]]): One or two muted RGB colours.
        period (float): Stripe / checker period as a fraction of the image side.
        angle (float): Orientation of stripes / gradient in degrees.
        noise_sigma (float): Std of the per-pixel noise (in 0-255 units).
        noise_seed (int): Seed of the per-pixel noise.
    """
    kind: str
    colours: List[Tuple[int, int, int]]
    period: float = 0.1
    angle: float = 0.0
    noise_sigma: float = 3.0
    noise_seed: int = 0


@dataclass
class Scene:
    """A sampled scene: background + objects (dominant ones first, painted in order).

    Args:
        background (Background): The background.
        objects (list[SceneObject]): Objects in painting order.
        colour (str): Colour of the dominant category.
        shape (str): Shape of the dominant category.
        count (int): How many dominant objects are drawn.
        position (str, optional): Named position (key of :data:`POSITIONS`) of the
            dominant object when ``count == 1``, else ``None``.
    """
    background: Background
    objects: List[SceneObject] = field(default_factory=list)
    colour: str = 'red'
    shape: str = 'circle'
    count: int = 1
    position: Optional[str] = None

    @property
    def category(self) -> str:
        """str: The dominant class name ``'<colour> <shape>'``."""
        return f'{self.colour} {self.shape}'

    @property
    def label(self) -> int:
        """int: Index of the dominant category in :func:`get_classnames`."""
        return get_classnames().index(self.category)

    @property
    def distractors(self) -> List[SceneObject]:
        """list[SceneObject]: The non-dominant objects."""
        return [o for o in self.objects if not o.is_dominant]


# --------------------------------------------------------------------------- sampling
def _muted_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    grey = rng.uniform(85, 165)
    tint = rng.uniform(-18, 18, size=3)
    return tuple(int(v) for v in np.clip(grey + tint, 0, 255))


def _jitter_rgb(rgb, rng: np.random.Generator, amount: float = 18):
    return tuple(int(v) for v in np.clip(np.asarray(rgb) + rng.uniform(
        -amount, amount, size=3), 0, 255))


def _sample_background(rng: np.random.Generator) -> Background:
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    c1 = _muted_colour(rng)
    c2 = _muted_colour(rng)
    # Keep the two texture colours apart so stripes/checkers are visible.
    if abs(sum(c1) - sum(c2)) < 60:
        shift = 35 if sum(c1) < 3 * 125 else -35
        c2 = tuple(int(np.clip(v + shift, 0, 255)) for v in c1)
    period = float(rng.uniform(0.08, 0.18))
    angle = float(rng.choice([0.0, 90.0, 45.0, 135.0])) if kind == 'stripes' \
        else float(rng.uniform(0, 360))
    sigma = {'noise': float(rng.uniform(12, 22))}.get(kind, float(rng.uniform(1, 4)))
    return Background(
        kind=kind,
        colours=[c1, c2],
        period=period,
        angle=angle,
        noise_sigma=sigma,
        noise_seed=int(rng.integers(2**31)))


# Radius of the circumscribed circle of each unit shape (rotation invariant).
_RADIUS = {
    'circle': 0.5,
    'square': 0.45 * math.sqrt(2),
    'triangle': math.hypot(0.5, math.sqrt(3) / 4),
    'cross': math.hypot(0.5, 1 / 6),
}


def _half_extent(shape: str, scale: float) -> float:
    """Radius of the circle enclosing an object at any rotation, normalised."""
    return scale * _RADIUS[shape]


def _fits(cx, cy, r, placed, margin):
    if cx - r < 0.01 or cy - r < 0.01 or cx + r > 0.99 or cy + r > 0.99:
        return False
    return all(math.hypot(cx - px, cy - py) >= r + pr + margin for px, py, pr in placed)


def _make_object(shape, colour, cx, cy, scale, rng, is_dominant):
    max_angle = {'circle': 0.0, 'square': 20.0, 'triangle': 15.0, 'cross': 15.0}[shape]
    angle = float(rng.uniform(-max_angle, max_angle)) if max_angle else 0.0
    return SceneObject(
        shape=shape,
        colour=colour,
        cx=float(cx),
        cy=float(cy),
        scale=float(scale),
        angle=angle,
        rgb=_jitter_rgb(COLOURS[colour], rng),
        is_dominant=is_dominant)


def sample_scene(rng: np.random.Generator,
                 category: Optional[Tuple[str, str]] = None,
                 count: Optional[int] = None,
                 distractor_prob: float = _DISTRACTOR_PROB) -> Scene:
    """Sample a resolution-independent scene.

    Objects never overlap (their bounding circles are kept apart), so per-object
    masks equal the full shapes and boxes are tight.

    Args:
        rng (np.random.Generator): Source of randomness (the only one used).
        category (tuple[str, str], optional): ``(colour, shape)`` of the dominant
            category. Sampled uniformly if None.
        count (int, optional): Number of dominant objects (1-3). Sampled if None.
        distractor_prob (float): Probability of adding one smaller object of a
            different category. Defaults to 0.35.

    Returns:
        Scene: The sampled scene.
    """
    if category is None:
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
    else:
        colour, shape = category
    if colour not in COLOURS or shape not in SHAPES:
        raise ValueError(f'Unknown category {category!r}')
    if count is None:
        count = int(rng.choice([1, 2, 3], p=_COUNT_PROBS))
    if count not in _DOMINANT_SCALE:
        raise ValueError(f'count must be 1, 2 or 3, got {count}')
    background = _sample_background(rng)

    objects: List[SceneObject] = []
    placed: List[Tuple[float, float, float]] = []
    position = None
    lo, hi = _DOMINANT_SCALE[count]
    if count == 1:
        position = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
        px, py = POSITIONS[position]
        # Largest scale that still fits at the nominal position.
        room = min(px, py, 1 - px, 1 - py) - 0.01
        scale = float(rng.uniform(lo, min(hi, max(lo, room / _RADIUS[shape]))))
        r = _half_extent(shape, scale)
        cx = float(np.clip(px + rng.uniform(-0.05, 0.05), r + 0.01, 0.99 - r))
        cy = float(np.clip(py + rng.uniform(-0.05, 0.05), r + 0.01, 0.99 - r))
        objects.append(_make_object(shape, colour, cx, cy, scale, rng, True))
        placed.append((cx, cy, r))
    else:
        scale = float(rng.uniform(lo, hi))
        while not placed:
            for _ in range(count):
                r = _half_extent(shape, scale)
                for _try in range(200):
                    cx, cy = rng.uniform(r + 0.01, 0.99 - r, size=2)
                    if _fits(cx, cy, r, placed, 0.02):
                        placed.append((float(cx), float(cy), r))
                        break
            if len(placed) < count:  # could not pack them: shrink and retry
                placed = []
                scale *= 0.95
        for cx, cy, _ in placed:
            objects.append(_make_object(shape, colour, cx, cy, scale, rng, True))

    if rng.random() < distractor_prob:
        others = [(c, s) for c in COLOURS for s in SHAPES if (c, s) != (colour, shape)]
        d_colour, d_shape = others[int(rng.integers(len(others)))]
        d_scale = float(rng.uniform(*_DISTRACTOR_SCALE))
        r = _half_extent(d_shape, d_scale)
        for _try in range(100):
            cx, cy = rng.uniform(r + 0.01, 0.99 - r, size=2)
            if _fits(cx, cy, r, placed, 0.03):
                objects.append(
                    _make_object(d_shape, d_colour, cx, cy, d_scale, rng, False))
                placed.append((float(cx), float(cy), r))
                break
    return Scene(
        background=background,
        objects=objects,
        colour=colour,
        shape=shape,
        count=count,
        position=position)
