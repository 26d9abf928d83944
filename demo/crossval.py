"""How the demo networks do on the shipped *real* data, kept apart from the generated data. Pure (no Django).

- The demo trial's cases (`seed_demo`) use real photographs and fields that the demo networks never train
  on: the HRF photographs in `DEMO_CASE_PHOTOS` and the visual fields of the patients in
  `DEMO_CASE_VF_PATIENTS`. `real_held_out_card` scores a trained demo network on exactly those (each HRF
  photograph is its own subject; a patient's fields are all held out together) and writes the figures,
  with their count and a plain sentence on whether it ranks the real positives above the real negatives,
  into the model card, next to (not mixed with) its figures on generated data.
- `cross_validate` trains k networks on k-1 folds of the shipped real data, split by subject, and scores
  each on its own held-out fold; the pooled out-of-fold figures are the cross-validated real-data metrics
  (`seed_demo` has the worker put them on the card after the server has started, one fold per task:
  demo.cross_validation; `train_model --demo --cross-validate K` and `seed_demo --cross-validate-here` run
  them before registering; `python -m tests.benchmarks.bench_demo_models --folds K` prints them). The
  photograph networks' folds share the run's generated photographs (demo.training.CrossValidationRecipe).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from diagnosis.networks.checkpoints import build_network
from diagnosis.networks.inference import normalise_images
from diagnosis.networks.zoom_in_net import REFERABLE_FROM_GRADE
from diagnosis.training import datasets
from diagnosis.training.core import binary_metrics, fundus_glaucoma_crops, predict_zoom_in_net

# The demo trial's photographs (demo/seeding.py DEMO_SUBJECTS): never in a demo network's training set.
DEMO_CASE_PHOTOS = frozenset(
    {"01_dr.jpg", "02_dr.jpg", "03_dr.jpg", "01_g.jpg", "02_g.jpg", "03_g.jpg", "01_h.jpg", "02_h.jpg"}
)
# Patients (by file stem and id) whose fields the demo trial's cases use: never trained on.
DEMO_CASE_VF_PATIENTS = {
    "vfctrSunyiu24d2": frozenset(str(i) for i in range(1, 13)),  # 12 healthy controls (4 OS, 8 OD)
    "vfpwgRetest24d2": frozenset(str(i) for i in range(1, 9)),  # 8 glaucoma patients (4 OS, 4 OD)
}
HRF_DR_GRADE = {"diabetic_retinopathy": 2, "glaucoma": 0, "healthy": 0}  # DR photographs as grade 2
HRF_GLAUCOMA = {"diabetic_retinopathy": 0, "glaucoma": 1, "healthy": 0}


def is_demo_case_patient(group: str) -> bool:
    """`group` as `datasets.visualfields_package_rows` names it: "<file stem>:<patient id>"."""
    stem, _, patient = group.partition(":")
    return patient in DEMO_CASE_VF_PATIENTS.get(stem, frozenset())


def hrf_set(size: int, *, glaucoma: bool, held_out: bool | None = None) -> datasets.FundusSet:
    """The shipped HRF photographs with their demo labels (DR as grade 2, or glaucoma 1), each photograph its
    own subject. `held_out`: True only the demo trial's photographs, False all the others, None all 20."""
    from demo.training import DEMO_DATA

    rows = list(csv.DictReader((DEMO_DATA / "hrf" / "labels.csv").read_text().splitlines()))
    if held_out is not None:
        rows = [row for row in rows if (row["image"] in DEMO_CASE_PHOTOS) == held_out]
    table = HRF_GLAUCOMA if glaucoma else HRF_DR_GRADE
    labels = datasets.GLAUCOMA_LABELS if glaucoma else datasets.GRADE_LABELS
    items = [(row["image"], Image.open(DEMO_DATA / "hrf" / row["image"]), table[row["label"]]) for row in rows]
    data = datasets.fundus_set(items, size, labels)
    data.groups = [row["hrf_id"] for row in rows]
    return data


def demo_vf_fields(*, held_out: bool | None = None) -> list[tuple[Any, int, str]]:
    """The shipped real fields (healthy controls 0, glaucoma patients 1), grouped by patient."""
    from demo.training import demo_visual_fields

    fields = demo_visual_fields()
    if held_out is None:
        return fields
    return [field for field in fields if is_demo_case_patient(field[2]) == held_out]


# --- scoring -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealSet:
    """Real inputs ready for one architecture: photographs (FundusSet) or fields (VisualFieldSet)."""

    architecture: str
    data: Any
    what: str  # "photographs" or "fields"

    @property
    def truth(self) -> np.ndarray:
        labels = (self.data.grades if self.what == "photographs" else self.data.labels).cpu().numpy()
        return EVALUATIONS[self.architecture].positive(labels)

    @property
    def subjects(self) -> int:
        groups = self.data.group_of_each() if self.what == "photographs" else self.data.groups
        return len(set(groups))


def _real_photographs(
    architecture: str, size_attribute: str, *, glaucoma: bool
) -> Callable[[Any, bool | None], RealSet]:
    """The shipped HRF photographs at the size the network's config names (`size_attribute`)."""

    def real(config: Any, held_out: bool | None) -> RealSet:
        size = int(getattr(config, size_attribute))
        return RealSet(architecture, hrf_set(size, glaucoma=glaucoma, held_out=held_out), "photographs")

    return real


def _real_fields(config: Any, held_out: bool | None) -> RealSet:
    fields = datasets.visual_field_set(demo_vf_fields(held_out=held_out), size=config.input_size)
    return RealSet("vf_glaucoma", fields, "fields")


def _referable_dr_scores(model: Any, real: RealSet) -> np.ndarray:
    probabilities = predict_zoom_in_net(model, real.data.images, device=torch.device("cpu")).probabilities
    return np.asarray(probabilities[:, REFERABLE_FROM_GRADE:].sum(axis=1))


def _fundus_glaucoma_scores(model: Any, real: RealSet) -> np.ndarray:
    with torch.inference_mode():
        crops = fundus_glaucoma_crops(model, real.data.images, device=torch.device("cpu"))
        return np.asarray(torch.sigmoid(model.classify(normalise_images(crops)).float()).numpy())


def _vf_glaucoma_scores(model: Any, real: RealSet) -> np.ndarray:
    with torch.inference_mode():
        return np.asarray(model.predict_proba(normalise_images(real.data.plots), real.data.indices).float().numpy())


@dataclass(frozen=True)
class DemoEvaluation:
    """How a demo network is scored on the shipped real data: one description per architecture (as
    diagnosis.networks.specs describes the networks themselves), read by everything below."""

    real: Callable[[Any, bool | None], RealSet]  # (network config, held_out) -> the real inputs
    positive: Callable[[np.ndarray], np.ndarray]  # labels -> which items are positive
    scores: Callable[[Any, RealSet], np.ndarray]  # (network, real inputs) -> per-item positive probability
    positives: str  # what the positives are called on the card
    task: str


EVALUATIONS: dict[str, DemoEvaluation] = {
    "zoom_in_net": DemoEvaluation(
        real=_real_photographs("zoom_in_net", "highres_size", glaucoma=False),
        positive=lambda labels: labels >= REFERABLE_FROM_GRADE,
        scores=_referable_dr_scores,
        positives="referable-DR photographs",
        task="referable DR (grade >= 2) against the rest",
    ),
    "fundus_glaucoma": DemoEvaluation(
        real=_real_photographs("fundus_glaucoma", "view_size", glaucoma=True),
        positive=lambda labels: labels.astype(bool),
        scores=_fundus_glaucoma_scores,
        positives="glaucoma photographs",
        task="glaucoma",
    ),
    "vf_glaucoma": DemoEvaluation(
        real=_real_fields,
        positive=lambda labels: labels.astype(bool),
        scores=_vf_glaucoma_scores,
        positives="glaucoma fields",
        task="glaucoma",
    ),
}


def real_set(architecture: str, config: Any, *, held_out: bool | None) -> RealSet:
    return EVALUATIONS[architecture].real(config, held_out)


def positive_scores(model: Any, real: RealSet) -> np.ndarray:  # the network of real.architecture
    """Per item: the referable-DR probability (DR grader) or the glaucoma probability."""
    model.eval()
    return EVALUATIONS[real.architecture].scores(model, real)


CHANCE_AUC = 0.6  # below this ROC AUC the card says the network does not rank better than chance


def ranking_sentence(metrics: dict[str, float], real: RealSet) -> str:
    """A plain sentence on whether the network ranks the real positives above the real negatives, and what
    it calls them at 0.5."""
    positive = EVALUATIONS[real.architecture].positives
    negative = "the healthy fields" if real.what == "fields" else "the other photographs (healthy or other disease)"
    n, subjects = int(metrics["n"]), real.subjects
    if "auc" not in metrics:
        return f"Not measured: the {n} real held-out {real.what} hold one class only."
    auc = metrics["auc"]
    if auc >= 0.7:
        verdict = f"It ranks the real {positive} above {negative} (ROC AUC {auc:.2f})"
    elif auc >= CHANCE_AUC:
        verdict = f"It ranks the real {positive} above {negative} only weakly (ROC AUC {auc:.2f})"
    else:
        verdict = (
            f"It does NOT rank the real {positive} above {negative} better than chance (ROC AUC {auc:.2f}): its "
            f"output on real {real.what} is not evidence of disease"
        )
    truth = real.truth
    positives, negatives = int(truth.sum()), int((~truth).sum())
    found = round(metrics.get("sensitivity", 0.0) * positives)
    cleared = round(metrics.get("specificity", 0.0) * negatives)
    return (
        f"{verdict}, on {n} real {real.what} of {subjects} subjects it never trained on. At 0.5 it calls {found} "
        f"of the {positives} positive and clears {cleared} of the {negatives} negative {real.what}."
    )


def real_metrics(model: torch.nn.Module, real: RealSet) -> dict[str, float]:
    metrics = binary_metrics(real.truth, positive_scores(model, real))
    metrics["subjects"] = float(real.subjects)
    return {k: round(float(v), 4) for k, v in metrics.items()}


def network_of(trained: Any) -> tuple[torch.nn.Module, Any]:
    """The trained network (CPU, eval) and its config, rebuilt from a runner.TrainedModel."""
    import io

    payload = torch.load(io.BytesIO(trained.weights), map_location="cpu", weights_only=True)
    model = build_network(payload["architecture"], payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), model.config


def real_held_out_card(trained: Any) -> Any:
    """The trained demo network with its card reporting the real held-out figures (the demo trial's own
    photographs or patients' fields) as `metrics`, its figures on the training run's validation split as
    `metrics_validation_split`, and the ranking sentence in `real_data_performance`."""
    model, config = network_of(trained)
    real = real_set(trained.architecture, config, held_out=True)
    metrics = real_metrics(model, real)
    card = dict(trained.model_card)
    card["metrics_validation_split"] = card.get("metrics", {})
    card["metrics"] = metrics
    task = EVALUATIONS[trained.architecture].task
    card["metrics_note"] = (
        f"`metrics`: on the {int(metrics['n'])} real {real.what} the demo trial uses ({real.subjects} subjects), "
        f"none of them in training; {task}, threshold 0.5. `metrics_validation_split`: "
        + (
            "on the training run's held-out patients' fields (real, split by patient)."
            if real.what == "fields"
            else "on the training run's validation images, all of them generated (every real one trained)."
        )
    )
    card["real_data_performance"] = ranking_sentence(metrics, real)
    trained.model_card = card
    trained.metrics = metrics
    return trained


# --- cross-validation ------------------------------------------------------------------------------------


def grouped_folds(groups: Sequence[str], folds: int, seed: int) -> list[list[int]]:
    """Indices of each of `folds` folds; every subject (group) in exactly one fold, subjects shuffled."""
    unique = sorted(set(groups))
    if folds < 2 or folds > len(unique):
        raise ValueError(f"need 2 to {len(unique)} folds for {len(unique)} subjects, got {folds}")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = {unique[j]: rank % folds for rank, j in enumerate(order)}
    return [[i for i, g in enumerate(groups) if fold_of[g] == fold] for fold in range(folds)]


def cross_validation_folds(
    architecture: str, config: Any, *, folds: int, seed: int = 0
) -> tuple[RealSet, list[list[int]]]:
    """All the shipped real data of `architecture` and the indices of each of its `folds` folds, by subject."""
    everything = real_set(architecture, config, held_out=None)
    groups = everything.data.group_of_each() if everything.what == "photographs" else everything.data.groups
    return everything, grouped_folds(groups, folds, seed)


def fold_scores(
    everything: RealSet, held: Sequence[int], train_fold: Callable[[Any, int], Any], number: int
) -> np.ndarray:
    """One fold: a network trained on every other fold (`train_fold(real training subset, fold number)`, a
    runner.TrainedModel), scored on the `held` items it never saw."""
    held_set = set(held)
    kept = [i for i in range(len(everything.truth)) if i not in held_set]
    model, _ = network_of(train_fold(_subset(everything, kept), number))
    return positive_scores(model, RealSet(everything.architecture, _subset(everything, held).data, everything.what))


def pooled_metrics(everything: RealSet, scores: Sequence[float] | np.ndarray, *, folds: int) -> dict[str, float]:
    """The pooled out-of-fold figures, with the folds, items (`n`) and subjects counted."""
    metrics = binary_metrics(everything.truth, np.asarray(scores, dtype=float))
    metrics.update(folds=float(folds), subjects=float(everything.subjects))
    return {k: round(float(v), 4) for k, v in metrics.items()}


def cross_validate(
    architecture: str,
    train_fold: Callable[[Any, int], Any],
    *,
    config: Any,
    folds: int,
    seed: int = 0,
) -> dict[str, float]:
    """Pooled out-of-fold metrics over all the shipped real data of `architecture`, split by subject.

    `train_fold(real training subset, fold number)` returns a runner.TrainedModel trained on that subset
    (plus, for photographs, whatever generated data the recipe adds); it is scored on the held-out fold.
    (The worker runs the same steps one fold per task: demo.cross_validation.)"""
    everything, fold_index = cross_validation_folds(architecture, config, folds=folds, seed=seed)
    scores = np.zeros(len(everything.truth))
    for number, held in enumerate(fold_index):
        scores[held] = fold_scores(everything, held, train_fold, number)
    return pooled_metrics(everything, scores, folds=folds)


def _subset(real: RealSet, index: Sequence[int]) -> RealSet:
    if real.what == "fields":
        return RealSet(real.architecture, real.data.subset(index), real.what)
    idx = torch.tensor(list(index), dtype=torch.long)
    data = real.data
    groups = data.group_of_each()
    return RealSet(
        real.architecture,
        datasets.FundusSet(
            data.images[idx], data.grades[idx], [data.names[i] for i in index], [groups[i] for i in index]
        ),
        real.what,
    )
