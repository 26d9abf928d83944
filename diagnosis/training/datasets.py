"""Training sets in the tensors the training core wants. Pure (no Django): files, CSVs and arrays in.

Fundus photographs are padded to a square with black and resized, exactly as `preprocess_fundus` does at
inference. Visual fields become the Pattern Deviation probability plot drawn by the upload pipeline's own
renderer, so a network sees at training what the workers will give it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from trials.uploads.visual_field import (
    N_POINTS,
    Eye,
    VisualField,
    analyse_visual_field,
    parse_visual_field_csv,
    render_pattern_deviation_plot,
)

PLOT_SIZE = 224  # the size the upload pipeline stores; networks resize from it


def as_eye(value: str) -> Eye:
    """ "OD" or "OS" (right or left eye); anything else is refused with the value."""
    if value == "OD":
        return "OD"
    if value == "OS":
        return "OS"
    raise ValueError(f"eye must be OD or OS, not {value!r}")


def square_uint8(image: Image.Image, size: int) -> np.ndarray:
    """3 x size x size uint8: the photo centred on black, as at inference."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    side = max(height, width)
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = rgb
    resized = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
    return resized.transpose(2, 0, 1).copy()


@dataclass
class FundusSet:
    images: Tensor  # N x 3 x S x S uint8
    grades: Tensor  # N long: ICDR 0-4 for DR sets, 0/1 (glaucoma) for glaucoma sets
    names: list[str]
    # Who each photograph belongs to (a subject), so that a validation split never puts one person's eyes
    # or visits on both sides; None: every photograph is its own group.
    groups: list[str] | None = None

    def __len__(self) -> int:
        return int(self.grades.shape[0])

    def group_of_each(self) -> list[str]:
        return list(self.groups) if self.groups is not None else list(self.names)


GRADE_LABELS = ("grade", range(5))  # CSV column and allowed values: ICDR grades
GLAUCOMA_LABELS = ("label", range(2))  # 0 healthy, 1 glaucoma


def fundus_set(
    items: Iterable[tuple[str, Image.Image, int]], size: int, labels: tuple[str, range] = GRADE_LABELS
) -> FundusSet:
    column, allowed = labels
    names, arrays, grades = [], [], []
    for name, image, grade in items:
        if grade not in allowed:
            raise ValueError(f"{name}: {column} must be {allowed.start}-{allowed.stop - 1}, got {grade}")
        names.append(name)
        arrays.append(square_uint8(image, size))
        grades.append(grade)
    if not arrays:
        raise ValueError("no labelled photographs")
    return FundusSet(torch.from_numpy(np.stack(arrays)), torch.tensor(grades, dtype=torch.long), names)


def fundus_folder(folder: Path, labels_csv: Path, size: int, labels: tuple[str, range] = GRADE_LABELS) -> FundusSet:
    """Photographs listed in a CSV with columns ``file,grade`` (or ``file,label`` for glaucoma sets; paths
    relative to ``folder``)."""
    column = labels[0]
    rows = list(csv.DictReader(labels_csv.read_text(encoding="utf-8-sig").splitlines()))
    if not rows or {"file", column} - set(rows[0]):
        raise ValueError(f"the labels CSV needs the columns file,{column}")
    root = folder.resolve()
    items = []
    for row in rows:
        path = (root / row["file"]).resolve()
        if root not in path.parents:
            raise ValueError(f"{row['file']}: outside the folder")
        try:
            value = int(row[column])
        except ValueError:
            raise ValueError(f"{row['file']}: {column} {row[column]!r} is not a whole number") from None
        items.append((row["file"], Image.open(path), value))
    return fundus_set(items, size, labels)


def merge(*sets: FundusSet) -> FundusSet:
    return FundusSet(
        torch.cat([s.images for s in sets]),
        torch.cat([s.grades for s in sets]),
        [n for s in sets for n in s.names],
        [g for s in sets for g in s.group_of_each()] if any(s.groups is not None for s in sets) else None,
    )


def split(
    count: int, validation_fraction: float, seed: int, groups: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """Seeded train/validation indices; with ``groups`` (e.g. patient ids) a group never straddles both."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(count)
        cut = max(1, round(count * validation_fraction)) if validation_fraction > 0 else 0
        return sorted(order[cut:].tolist()), sorted(order[:cut].tolist())
    unique = sorted(set(groups))
    if len(unique) < 2:  # one subject cannot be held out from itself: everything trains, nothing validates
        return list(range(count)), []
    rng.shuffle(unique)
    held = set(unique[: max(1, round(len(unique) * validation_fraction))]) if validation_fraction > 0 else set()
    train = [i for i, g in enumerate(groups) if g not in held]
    validation = [i for i, g in enumerate(groups) if g in held]
    return train, validation


@dataclass
class VisualFieldSet:
    plots: Tensor  # N x 3 x S x S uint8
    indices: Tensor  # N x 3 float: VFI %, MD dB, PSD dB
    labels: Tensor  # N long 0/1
    groups: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Sequence[int]) -> VisualFieldSet:
        idx = torch.tensor(list(index), dtype=torch.long)
        return VisualFieldSet(self.plots[idx], self.indices[idx], self.labels[idx], [self.groups[i] for i in index])


def plot_array(png: bytes, size: int) -> np.ndarray:
    image = Image.open(io.BytesIO(png)).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


def visual_field_set(fields: Sequence[tuple[VisualField, int, str]], size: int) -> VisualFieldSet:
    """(field, label 0/1, group) triples -> plots and indices computed as the upload pipeline does."""
    plots, indices, labels, groups = [], [], [], []
    for vf, label, group in fields:
        analysis = analyse_visual_field(vf)
        plots.append(plot_array(render_pattern_deviation_plot(analysis, size=PLOT_SIZE), size))
        indices.append((analysis.visual_field_index, analysis.mean_deviation, analysis.pattern_standard_deviation))
        labels.append(int(label))
        groups.append(group)
    if not plots:
        raise ValueError("no labelled visual fields")
    return VisualFieldSet(
        torch.from_numpy(np.stack(plots)),
        torch.tensor(indices, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.long),
        groups,
    )


def stored_visual_field_set(
    items: Sequence[tuple[bytes, tuple[float, float, float], int, str]], size: int
) -> VisualFieldSet:
    """(stored PD plot PNG, (VFI, MD, PSD) as stored, label 0/1, group) -> the set, read exactly as the
    workers read a case (`diagnosis.services`): the plot the upload pipeline stored, resized, and the stored
    indices (the perimeter's own where it reported them)."""
    if not items:
        raise ValueError("no labelled visual fields")
    return VisualFieldSet(
        torch.from_numpy(np.stack([plot_array(png, size) for png, _, _, _ in items])),
        torch.tensor([list(values) for _, values, _, _ in items], dtype=torch.float32),
        torch.tensor([int(label) for _, _, label, _ in items], dtype=torch.long),
        [group for _, _, _, group in items],
    )


def visualfields_package_rows(path: Path) -> list[tuple[VisualField, str]]:
    """Fields from the visualFields R package's CSV export (``id, eye, age, fpr, fnr, fl, l1..l54``)."""
    out = []
    for row in csv.DictReader(path.read_text().splitlines()):
        sens = []
        for i in range(1, N_POINTS + 1):
            value = float(row[f"l{i}"])
            sens.append(math.nan if i in (26, 35) else value)  # negative = "<0 dB", kept as the pipeline keeps it
        vf = VisualField(
            eye=as_eye(row["eye"]),
            age=min(float(row["age"]), 90.0),
            sensitivities=tuple(sens),
            fixation_losses=round(float(row["fl"]) * 100),
            fixation_checks=100,
            false_positive_percent=float(row["fpr"]) * 100,
            false_negative_percent=float(row["fnr"]) * 100,
        )
        out.append((vf, f"{path.stem}:{row['id']}"))
    return out


def visual_field_folder(folder: Path, labels_csv: Path) -> list[tuple[VisualField, int, str]]:
    """Visual-field CSVs (Visus format) listed in a CSV with columns ``file,label`` (1 glaucoma, 0 not)."""
    rows = list(csv.DictReader(labels_csv.read_text(encoding="utf-8-sig").splitlines()))
    if not rows or {"file", "label"} - set(rows[0]):
        raise ValueError("the labels CSV needs the columns file,label")
    root = folder.resolve()
    out = []
    for row in rows:
        path = (root / row["file"]).resolve()
        if root not in path.parents:
            raise ValueError(f"{row['file']}: outside the folder")
        for vf in parse_visual_field_csv(path.read_text(encoding="utf-8-sig")):
            out.append((vf, int(row["label"]), row["file"]))
    return out
