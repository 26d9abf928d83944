"""Generated fundus-like photographs with controlled diabetic-retinopathy lesions.

They exist for tests, demos and benchmarks: the platform cannot ship real photographs in its test
suite, and a generated image whose lesions are known exactly lets a test check that the network's
attention lands on them.

Each image is an orange-red fundus disc on black with vignetting, low-frequency texture, an optic disc,
a darker macula and branching vessels (vessels are dark red, like haemorrhages, so a network cannot
grade by "find anything dark red"). Lesions are drawn on top:

- microaneurysms (MA): small sharp dark-red dots;
- blot haemorrhages: larger irregular dark-red blots;
- hard exudates: small clusters of yellow-white dots;
- neovascular tufts: tangles of fine vessels, away from the main vessel tree.

The grade follows the lesions by a fixed rule (`icdr_grade_from_lesions`), a simplification of the
ICDR scale:

- 4 (proliferative): any neovascular tuft;
- 3 (severe NPDR): at least `SEVERE_HAEMORRHAGES_PER_QUADRANT` haemorrhages in each of the four
  quadrants around the fundus centre (a scaled-down 4-2-1 rule);
- 2 (moderate NPDR): any haemorrhage or hard exudate;
- 1 (mild NPDR): microaneurysms only;
- 0: no lesion.

Generation is deterministic: the same seed gives the same lesions and pixels (numpy's PCG64 and float64
arithmetic only; a different numpy build may differ in the last bit of a sine, never in the lesions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MICROANEURYSM = "microaneurysm"
HAEMORRHAGE = "haemorrhage"
HARD_EXUDATE = "hard_exudate"
NEOVASCULARISATION = "neovascularisation"
LESION_KINDS = (MICROANEURYSM, HAEMORRHAGE, HARD_EXUDATE, NEOVASCULARISATION)

ICDR_GRADES = (0, 1, 2, 3, 4)
# Cup-to-disc ratios drawn for the glaucoma sets: healthy discs have a small cup, glaucomatous ones a large
# cup (a vertical CDR of 0.7 or more is the usual clinical flag). The gap between the ranges keeps the
# label unambiguous at the small presets' resolution.
GLAUCOMA_CUP_TO_DISC = 0.65
HEALTHY_CUP_TO_DISC_RANGE = (0.2, 0.45)
GLAUCOMA_CUP_TO_DISC_RANGE = (0.65, 0.9)
SEVERE_HAEMORRHAGES_PER_QUADRANT = 2

# Sizes are given for a 256 px image and scaled with the image, so a lesion covers the same fraction
# of the fundus at every resolution.
_REFERENCE_SIZE = 256.0


@dataclass(frozen=True)
class Lesion:
    """One drawn lesion, in pixel coordinates of the generated image (x to the right, y down)."""

    kind: str
    centre: tuple[float, float]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class SyntheticFundus:
    image: np.ndarray  # H x W x 3, uint8 RGB
    grade: int
    lesions: tuple[Lesion, ...]
    fundus_centre: tuple[float, float]
    fundus_radius: float
    disc_centre: tuple[float, float] = (0.0, 0.0)
    disc_radius: float = 0.0
    cup_to_disc: float | None = None  # None: no cup drawn (the DR sets)

    @property
    def glaucoma(self) -> bool:
        """The generator's glaucoma rule: a cup-to-disc ratio of GLAUCOMA_CUP_TO_DISC or more."""
        return self.cup_to_disc is not None and self.cup_to_disc >= GLAUCOMA_CUP_TO_DISC

    @property
    def referable(self) -> bool:
        return self.grade >= 2


def quadrant_of(point: tuple[float, float], centre: tuple[float, float]) -> int:
    """Quadrant 0-3 of a point around the fundus centre (0: upper right, then anticlockwise on screen)."""
    dx, dy = point[0] - centre[0], point[1] - centre[1]
    if dy < 0:
        return 0 if dx >= 0 else 1
    return 2 if dx < 0 else 3


def icdr_grade_from_lesions(lesions: Sequence[Lesion], fundus_centre: tuple[float, float]) -> int:
    """The grade the generator's rule gives these lesions (see the module docstring)."""
    kinds = [lesion.kind for lesion in lesions]
    if NEOVASCULARISATION in kinds:
        return 4
    per_quadrant = [0, 0, 0, 0]
    for lesion in lesions:
        if lesion.kind == HAEMORRHAGE:
            per_quadrant[quadrant_of(lesion.centre, fundus_centre)] += 1
    if min(per_quadrant) >= SEVERE_HAEMORRHAGES_PER_QUADRANT:
        return 3
    if HAEMORRHAGE in kinds or HARD_EXUDATE in kinds:
        return 2
    if MICROANEURYSM in kinds:
        return 1
    return 0


class _Canvas:
    """Float RGB image plus darkening/brightening masks, composited once at the end."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rgb = np.zeros((size, size, 3), dtype=np.float64)
        # Per-pixel opacity of red lesions/vessels and of yellow exudates, and their colours.
        self.dark = np.zeros((size, size), dtype=np.float64)
        self.dark_colour = np.zeros((size, size, 3), dtype=np.float64)
        self.bright = np.zeros((size, size), dtype=np.float64)

    def stamp(
        self, layer: str, cx: float, cy: float, radius: float, opacity: float, colour: np.ndarray | None = None
    ) -> None:
        """Soft-edged disc: full opacity inside the radius, fading over one pixel (anti-aliased)."""
        self.segment(layer, (cx, cy), (cx, cy), radius, opacity, colour)

    def segment(
        self,
        layer: str,
        start: Sequence[float],
        end: Sequence[float],
        radius: float,
        opacity: float,
        colour: np.ndarray | None = None,
    ) -> None:
        """Soft-edged capsule (a thick line segment with round ends); a disc when start == end."""
        (sx, sy), (ex, ey) = start, end
        x0 = max(int(np.floor(min(sx, ex) - radius - 2)), 0)
        x1 = min(int(np.ceil(max(sx, ex) + radius + 2)) + 1, self.size)
        y0 = max(int(np.floor(min(sy, ey) - radius - 2)), 0)
        y1 = min(int(np.ceil(max(sy, ey) + radius + 2)) + 1, self.size)
        if x0 >= x1 or y0 >= y1:
            return
        px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
        py = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
        dx, dy = ex - sx, ey - sy
        length2 = dx * dx + dy * dy
        t = np.clip(((px - sx) * dx + (py - sy) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        distance = np.hypot(px - (sx + t * dx), py - (sy + t * dy))
        alpha = opacity * np.clip(radius + 0.5 - distance, 0.0, 1.0)
        if layer == "dark":
            patch = self.dark[y0:y1, x0:x1]
            stronger = alpha > patch
            self.dark_colour[y0:y1, x0:x1][stronger] = colour
            np.maximum(patch, alpha, out=patch)
        else:
            patch = self.bright[y0:y1, x0:x1]
            np.maximum(patch, alpha, out=patch)


def _draw_polyline(canvas: _Canvas, points: np.ndarray, width: float, opacity: float, colour: np.ndarray) -> None:
    for start, end in zip(points[:-1], points[1:], strict=True):
        canvas.segment("dark", start, end, width / 2, opacity, colour)


def _random_walk(
    rng: np.random.Generator, start: Sequence[float], heading: float, steps: int, step: float, turn: float
) -> np.ndarray:
    points = [np.asarray(start, dtype=np.float64)]
    for _ in range(steps):
        heading += rng.normal(0.0, turn)
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.stack(points)


def _fundus_background(
    rng: np.random.Generator, size: int, centre: Sequence[float], radius: float
) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    distance = np.hypot(xs - centre[0], ys - centre[1]) / radius
    base = np.array([0.78, 0.36, 0.17]) * rng.uniform(0.85, 1.08) + rng.normal(0.0, 0.02, size=3)
    vignette = 1.0 - 0.35 * np.clip(distance, 0.0, 1.0) ** 2
    texture = np.zeros((size, size))
    for _ in range(4):
        frequency = rng.uniform(1.0, 4.0) / size
        angle = rng.uniform(0, np.pi)
        phase = rng.uniform(0, 2 * np.pi)
        texture += 0.025 * np.sin(2 * np.pi * frequency * (xs * np.cos(angle) + ys * np.sin(angle)) + phase)
    rgb = base[None, None, :] * (vignette + texture)[:, :, None]
    inside = np.clip((1.0 - distance) * radius + 0.5, 0.0, 1.0)  # anti-aliased fundus edge
    return rgb, inside


def _place(
    rng: np.random.Generator,
    centre: Sequence[float],
    radius: float,
    avoid: list[tuple[float, float, float]],
    quadrant: int | None = None,
) -> tuple[float, float]:
    """A random point well inside the fundus, away from the optic disc; optionally in a given quadrant."""
    for _ in range(200):
        r = radius * 0.82 * np.sqrt(rng.uniform(0.02, 1.0))
        if quadrant is None:
            theta = rng.uniform(0, 2 * np.pi)
        else:
            # Screen coordinates: quadrant 0 is upper right (dx >= 0, dy < 0), then anticlockwise.
            low = {0: -np.pi / 2, 1: -np.pi, 2: np.pi / 2, 3: 0.0}[quadrant]
            theta = rng.uniform(low + 0.1, low + np.pi / 2 - 0.1)
        point = (centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta))
        if all(np.hypot(point[0] - ax, point[1] - ay) > ar for ax, ay, ar in avoid):
            return point
    raise RuntimeError("could not place a lesion")  # pragma: no cover - the fundus is far larger than any lesion


def _count(plan: dict[str, int | list[int]], kind: str) -> int:
    count = plan[kind]
    assert isinstance(count, int)
    return count


def _lesion_plan(rng: np.random.Generator, grade: int) -> dict[str, int | list[int]]:
    """How many lesions of each kind to draw for the target grade (haemorrhages per quadrant)."""
    plan: dict[str, int | list[int]] = {MICROANEURYSM: 0, HARD_EXUDATE: 0, NEOVASCULARISATION: 0}
    haemorrhages = [0, 0, 0, 0]
    if grade >= 1:
        plan[MICROANEURYSM] = int(rng.integers(1, 5)) if grade == 1 else int(rng.integers(2, 6))
    if grade == 2 or grade == 4:
        # Moderate: haemorrhages in at most three quadrants, so the severe rule cannot fire.
        quadrants = rng.choice(4, size=int(rng.integers(1, 4)), replace=False)
        for quadrant in quadrants:
            haemorrhages[int(quadrant)] = int(rng.integers(1, 3))
        plan[HARD_EXUDATE] = int(rng.integers(0, 3))
    if grade == 3:
        haemorrhages = [int(rng.integers(SEVERE_HAEMORRHAGES_PER_QUADRANT, 4)) for _ in range(4)]
        plan[HARD_EXUDATE] = int(rng.integers(0, 4))
    if grade == 4:
        plan[NEOVASCULARISATION] = int(rng.integers(1, 3))
    plan[HAEMORRHAGE] = haemorrhages
    return plan


def generate_fundus(
    seed: int | np.random.SeedSequence, size: int = 256, grade: int | None = None, cup_to_disc: float | None = None
) -> SyntheticFundus:
    """One generated fundus photograph; `grade` None draws it (uniformly over 0-4).

    `cup_to_disc` draws a pale optic cup of that ratio inside the disc (None: no cup, and the image is
    exactly the one the DR sets get for this seed: the cup uses no random numbers).
    """
    rng = np.random.default_rng(seed)
    if grade is None:
        grade = int(rng.integers(0, 5))
    if grade not in ICDR_GRADES:
        raise ValueError(f"grade must be one of {ICDR_GRADES}, got {grade}")
    scale = size / _REFERENCE_SIZE
    centre = (size / 2 + rng.uniform(-0.02, 0.02) * size, size / 2 + rng.uniform(-0.02, 0.02) * size)
    radius = size * rng.uniform(0.44, 0.48)
    rgb, inside = _fundus_background(rng, size, centre, radius)
    canvas = _Canvas(size)

    side = 1 if rng.uniform() < 0.5 else -1  # optic disc nasal: right or left of the image
    disc = (centre[0] + side * 0.42 * radius, centre[1] + rng.uniform(-0.05, 0.05) * radius)
    disc_radius = 0.1 * radius
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    disc_weight = np.clip(1.0 - np.hypot(xs - disc[0], ys - disc[1]) / disc_radius, 0.0, 1.0) ** 0.5
    rgb = rgb * (1 - disc_weight[:, :, None]) + np.array([0.97, 0.86, 0.62]) * disc_weight[:, :, None]
    if cup_to_disc is not None:
        if not 0.0 < cup_to_disc < 1.0:
            raise ValueError(f"cup_to_disc must be between 0 and 1, got {cup_to_disc}")
        cup_radius = cup_to_disc * disc_radius
        cup_weight = np.clip(1.0 - np.hypot(xs - disc[0], ys - disc[1]) / cup_radius, 0.0, 1.0) ** 0.3
        rgb = rgb * (1 - cup_weight[:, :, None]) + np.array([1.0, 0.98, 0.9]) * cup_weight[:, :, None]
    fovea = (centre[0] - side * 0.1 * radius, centre[1])
    macula = np.exp(-(((xs - fovea[0]) ** 2 + (ys - fovea[1]) ** 2) / (2 * (0.13 * radius) ** 2)))
    rgb = rgb * (1 - 0.3 * macula[:, :, None])

    vessel_colour = np.array([0.5, 0.14, 0.1])
    for heading in (-0.6, 0.6, np.pi - 0.6, np.pi + 0.6):
        # Arcades leave the disc, bow towards the macula side and thin out, each with one branch.
        heading = heading + (0 if side < 0 else np.pi) + rng.normal(0, 0.1)
        path = _random_walk(rng, disc, heading, steps=14, step=radius * 0.07, turn=0.18)
        path = path[np.hypot(path[:, 0] - centre[0], path[:, 1] - centre[1]) < radius * 0.95]
        _draw_polyline(canvas, path, width=2.6 * scale, opacity=0.55, colour=vessel_colour)
        if len(path) > 4:
            branch_start = path[int(rng.integers(2, len(path) - 1))]
            branch = _random_walk(rng, branch_start, heading + rng.choice([-0.9, 0.9]), 8, radius * 0.06, 0.25)
            branch = branch[np.hypot(branch[:, 0] - centre[0], branch[:, 1] - centre[1]) < radius * 0.95]
            _draw_polyline(canvas, branch, width=1.6 * scale, opacity=0.45, colour=vessel_colour)

    plan = _lesion_plan(rng, grade)
    lesions: list[Lesion] = []
    avoid = [(disc[0], disc[1], disc_radius + 8 * scale)]

    def add(kind: str, point: Sequence[float], extent: float) -> None:
        lesions.append(
            Lesion(kind, (float(point[0]), float(point[1])), _clip_box(point, extent, size)),
        )
        avoid.append((point[0], point[1], extent + 3 * scale))

    red = np.array([0.38, 0.07, 0.05])
    for _ in range(_count(plan, MICROANEURYSM)):
        point = _place(rng, centre, radius, avoid)
        r = rng.uniform(1.5, 2.2) * scale
        canvas.stamp("dark", point[0], point[1], r, 0.95, red)
        add(MICROANEURYSM, point, r)
    per_quadrant = plan[HAEMORRHAGE]
    assert isinstance(per_quadrant, list)
    for quadrant, count in enumerate(per_quadrant):
        for _ in range(count):
            point = _place(rng, centre, radius, avoid, quadrant=quadrant)
            r = rng.uniform(4.0, 6.5) * scale
            extent = 0.0
            for _ in range(int(rng.integers(2, 5))):  # a blot is a few overlapping discs
                offset = rng.normal(0, 0.35 * r, size=2)
                part = r * rng.uniform(0.6, 0.9)
                canvas.stamp("dark", point[0] + offset[0], point[1] + offset[1], part, 0.9, red)
                extent = max(extent, float(np.hypot(*offset)) + part)
            add(HAEMORRHAGE, point, extent)
    for _ in range(_count(plan, HARD_EXUDATE)):
        point = _place(rng, centre, radius, avoid)
        extent = 0.0
        for _ in range(int(rng.integers(2, 6))):
            offset = rng.normal(0, 3.0 * scale, size=2)
            part = rng.uniform(1.2, 2.4) * scale
            canvas.stamp("bright", point[0] + offset[0], point[1] + offset[1], part, 0.9)
            extent = max(extent, float(np.hypot(*offset)) + part)
        add(HARD_EXUDATE, point, extent)
    for _ in range(_count(plan, NEOVASCULARISATION)):
        point = _place(rng, centre, radius, avoid)
        extent = 0.0
        for _ in range(int(rng.integers(5, 9))):  # a tuft: short, tortuous, fine vessels from one spot
            loop = _random_walk(rng, point, rng.uniform(0, 2 * np.pi), 6, 2.0 * scale, 0.9)
            _draw_polyline(canvas, loop, width=1.1 * scale, opacity=0.85, colour=red)
            extent = max(extent, float(np.max(np.hypot(loop[:, 0] - point[0], loop[:, 1] - point[1]))) + scale)
        add(NEOVASCULARISATION, point, extent)

    rgb = rgb * (1 - canvas.dark[:, :, None]) + canvas.dark_colour * canvas.dark[:, :, None]
    rgb = rgb * (1 - canvas.bright[:, :, None]) + np.array([0.98, 0.9, 0.5]) * canvas.bright[:, :, None]
    rgb = rgb + rng.normal(0.0, 0.015, size=rgb.shape)  # sensor noise
    rgb = rgb * inside[:, :, None]
    image = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)

    final = tuple(lesions)
    drawn_grade = icdr_grade_from_lesions(final, centre)
    if drawn_grade != grade:  # pragma: no cover - the plan is built to satisfy the rule
        raise AssertionError(f"generator drew grade {drawn_grade} lesions for target grade {grade}")
    return SyntheticFundus(
        image,
        grade,
        final,
        (float(centre[0]), float(centre[1])),
        float(radius),
        disc_centre=(float(disc[0]), float(disc[1])),
        disc_radius=float(disc_radius),
        cup_to_disc=cup_to_disc,
    )


def _clip_box(point: Sequence[float], extent: float, size: int) -> tuple[float, float, float, float]:
    x, y = float(point[0]), float(point[1])
    return (max(x - extent, 0.0), max(y - extent, 0.0), min(x + extent, float(size)), min(y + extent, float(size)))


def generate_fundus_set(
    count: int, seed: int, size: int = 256, grades: Sequence[int] | None = None
) -> list[SyntheticFundus]:
    """`count` images; image i depends only on (seed, i), so a longer set starts with the shorter one.

    `grades` None cycles 0-4 so every grade is equally represented; otherwise image i gets grades[i].
    """
    children = np.random.SeedSequence(seed).spawn(count)
    chosen = [ICDR_GRADES[i % len(ICDR_GRADES)] for i in range(count)] if grades is None else list(grades)
    if len(chosen) != count:
        raise ValueError("grades must have one entry per image")
    return [generate_fundus(child, size=size, grade=grade) for child, grade in zip(children, chosen, strict=True)]


def generate_glaucoma_fundus_set(count: int, seed: int, size: int = 256) -> list[SyntheticFundus]:
    """`count` photographs, alternately healthy and glaucomatous discs (see GLAUCOMA_CUP_TO_DISC).

    Each also gets DR grade 0, 1 or 2 lesions, drawn independently of the disc, so a glaucoma network
    cannot read one disease as the other. Image i depends only on (seed, i).
    """
    images = []
    for index, child in enumerate(np.random.SeedSequence(seed).spawn(count)):
        picture, choice = child.spawn(2)
        rng = np.random.default_rng(choice)
        low, high = GLAUCOMA_CUP_TO_DISC_RANGE if index % 2 else HEALTHY_CUP_TO_DISC_RANGE
        ratio = float(rng.uniform(low, high))
        images.append(generate_fundus(picture, size=size, grade=int(rng.integers(0, 3)), cup_to_disc=ratio))
    return images
