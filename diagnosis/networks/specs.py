"""One description per network architecture; the rest of the platform reads these instead of branching.

A `NetworkSpec` says what an architecture is called, which task it performs on which modality, how its
network is built from a stored config, what it reads (the model registry's input spec), how a batch is
predicted and how one output becomes the stored prediction (its fields and the overlay shown with it),
which template shows that prediction, and what it contributes to the per-eye glaucoma fusion.
How each architecture is trained is in `diagnosis.training.recipes`, keyed by the same names.

Adding an architecture means adding its module and one entry in `NETWORKS` (and a training recipe).
Pure torch/numpy/Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

from diagnosis.networks import fundus_glaucoma, fusion, inference, vf_glaucoma, zoom_in_net
from diagnosis.networks.config import JsonConfig
from diagnosis.networks.overlays import attention_overlay, region_overlay

FUNDUS = "fundus"
VISUAL_FIELD = "visual_field"


@dataclass(frozen=True)
class ResultContext:
    """What the worker knows about one item besides the network's output."""

    runtime_ms: float  # per item, the batch's forward time shared out
    device: str
    image_size: tuple[int, int] | None = None  # the photograph's (width, height); None for visual fields
    preview: Image.Image | None = None  # a downscaled copy of the photograph, to draw overlays on


@dataclass(frozen=True)
class PredictionRecord:
    """One output as the fields of a stored prediction, and the overlay image (PNG) stored with it."""

    fields: dict[str, Any]
    overlay: bytes | None = None


class Predict(Protocol):
    def __call__(
        self,
        network: nn.Module,
        items: Sequence[Any],
        *,
        batch_size: int,
        device: torch.device,
        propagate: tuple[type[BaseException], ...],
    ) -> Sequence[Any]: ...


@dataclass(frozen=True)
class NetworkSpec:
    architecture: str  # the name stored in checkpoints and the registry
    label: str
    task: str
    task_label: str
    modality: str  # what it reads: FUNDUS (a photograph) or VISUAL_FIELD (a reliable field's plot + indices)
    config_class: type[JsonConfig]
    network_class: type[nn.Module]
    describe_input: Callable[[Mapping[str, Any]], dict[str, Any]]  # config -> the registry's input spec
    predict: Predict  # a batch of items (photographs or VisualFieldItems) -> outputs or ItemErrors, in order
    record: Callable[[Any, ResultContext], PredictionRecord]  # one output -> the stored prediction
    result_template: str  # the template that shows one stored prediction on the case page
    glaucoma_evidence: str | None = None  # the fusion modality its probability feeds (None: not glaucoma)
    # The stored probability that is called against the model version's operating point, and the two calls.
    positive_field: str = "glaucoma_probability"
    positive_labels: tuple[str, str] = ("Glaucoma suspected", "Glaucoma not suspected")
    # How the case's result combines the predictions on its files (said on the case page; diagnosis/results.py).
    combination: str = "the highest glaucoma probability among the case's files decides"

    def build(self, config: Mapping[str, Any]) -> nn.Module:
        """The untrained network from a stored config (unknown fields are refused)."""
        return self.network_class(self.config_class.from_dict(dict(config)))

    def config_of(self, network: nn.Module) -> dict[str, Any]:
        config = network.config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(network).__name__} has no {self.config_class.__name__}")
        return config.to_dict()


# --- Zoom-in-Net: diabetic-retinopathy grade from a photograph -------------------------------------


def _dr_input(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "modality": FUNDUS,
        "input": "colour fundus photograph, padded to a square with black, resized",
        "lowres_size": config.get("input_size"),
        "highres_size": config.get("highres_size"),
        "normalisation": "ImageNet mean/std",
    }


def _dr_predict(
    network: nn.Module,
    items: Sequence[Any],
    *,
    batch_size: int,
    device: torch.device,
    propagate: tuple[type[BaseException], ...],
) -> Sequence[Any]:
    if not isinstance(network, zoom_in_net.ZoomInNet):
        raise TypeError(f"expected a ZoomInNet, got {type(network).__name__}")
    # The attention map is stored as an overlay on a 512-px preview; a larger map would be thrown away.
    return inference.predict_fundus(
        network, items, attention_max_side=512, batch_size=batch_size, device=device, propagate=propagate
    )


def _dr_record(output: inference.FundusPrediction, context: ResultContext) -> PredictionRecord:
    boxes = [list(box) for box in output.boxes]
    overlay = None
    if context.preview is not None and context.image_size is not None:
        overlay = attention_overlay(context.preview, output.attention, boxes, context.image_size)
    return PredictionRecord(
        {
            "class_probabilities": list(output.grade_probabilities),
            "grade": output.grade,
            "referable_probability": output.referable_probability,
            "crop_boxes": boxes,
            "runtime_ms": context.runtime_ms,
            "details": {"image_size": list(context.image_size or ()), "device": context.device},
        },
        overlay,
    )


# --- glaucoma from a visual field ------------------------------------------------------------------


def _vf_input(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "modality": VISUAL_FIELD,
        "input": "Pattern Deviation probability plot (24-2) plus VFI %, MD dB, PSD dB",
        "plot_size": config.get("input_size"),
        "requires": "reliable field (trial cut-offs)",
    }


def _vf_predict(
    network: nn.Module,
    items: Sequence[Any],
    *,
    batch_size: int,
    device: torch.device,
    propagate: tuple[type[BaseException], ...],
) -> Sequence[Any]:
    if not isinstance(network, vf_glaucoma.VFGlaucomaNet):
        raise TypeError(f"expected a VFGlaucomaNet, got {type(network).__name__}")
    return inference.predict_visual_fields(network, items, batch_size=batch_size, device=device, propagate=propagate)


def _vf_record(output: inference.VisualFieldPrediction, context: ResultContext) -> PredictionRecord:
    return PredictionRecord(
        {
            "glaucoma_probability": output.glaucoma_probability,
            "runtime_ms": context.runtime_ms,
            "details": {"device": context.device},
        }
    )


# --- glaucoma from a photograph (optic-disc crop) --------------------------------------------------


def _fundus_glaucoma_input(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "modality": FUNDUS,
        "input": "colour fundus photograph, padded to a square with black, resized; the optic disc is located "
        "and a disc-centred crop is classified",
        "view_size": config.get("view_size"),
        "crop_input_size": config.get("input_size"),
        "normalisation": "ImageNet mean/std",
    }


def _fundus_glaucoma_predict(
    network: nn.Module,
    items: Sequence[Any],
    *,
    batch_size: int,
    device: torch.device,
    propagate: tuple[type[BaseException], ...],
) -> Sequence[Any]:
    if not isinstance(network, fundus_glaucoma.FundusGlaucomaNet):
        raise TypeError(f"expected a FundusGlaucomaNet, got {type(network).__name__}")
    return inference.predict_fundus_glaucoma(network, items, batch_size=batch_size, device=device, propagate=propagate)


def _fundus_glaucoma_record(output: inference.FundusGlaucomaPrediction, context: ResultContext) -> PredictionRecord:
    boxes = [list(output.disc_box)]
    overlay = None
    if context.preview is not None and context.image_size is not None:
        overlay = region_overlay(context.preview, boxes, context.image_size)
    return PredictionRecord(
        {
            "glaucoma_probability": output.glaucoma_probability,
            "crop_boxes": boxes,
            "runtime_ms": context.runtime_ms,
            "details": {"image_size": list(context.image_size or ()), "device": context.device},
        },
        overlay,
    )


NETWORKS: dict[str, NetworkSpec] = {
    spec.architecture: spec
    for spec in (
        NetworkSpec(
            architecture=zoom_in_net.ARCHITECTURE,
            label="DR grader (Zoom-in-Net style)",
            task="dr_grading",
            task_label="Diabetic retinopathy grading (fundus)",
            modality=FUNDUS,
            config_class=zoom_in_net.ZoomInNetConfig,
            network_class=zoom_in_net.ZoomInNet,
            describe_input=_dr_input,
            predict=_dr_predict,
            record=_dr_record,
            result_template="diagnosis/predictions/dr_grading.html",
            positive_field="referable_probability",
            positive_labels=("Referable", "Not referable"),
            combination="the worst photograph decides: the case takes the highest ICDR grade and the highest "
            "referable-DR probability among its photographs, as the most severe field decides an eye's grade",
        ),
        NetworkSpec(
            architecture=vf_glaucoma.ARCHITECTURE,
            label="Glaucoma from visual fields (VGG16 + VFI/MD/PSD)",
            task="glaucoma_vf",
            task_label="Glaucoma from visual fields",
            modality=VISUAL_FIELD,
            config_class=vf_glaucoma.VFGlaucomaConfig,
            network_class=vf_glaucoma.VFGlaucomaNet,
            describe_input=_vf_input,
            predict=_vf_predict,
            record=_vf_record,
            result_template="diagnosis/predictions/glaucoma_vf.html",
            glaucoma_evidence=fusion.VISUAL_FIELD,
            combination="read from the case's newest visual field",
        ),
        NetworkSpec(
            architecture=fundus_glaucoma.ARCHITECTURE,
            label="Glaucoma from fundus photographs (optic-disc crop classifier)",
            task="glaucoma_fundus",
            task_label="Glaucoma from fundus photographs",
            modality=FUNDUS,
            config_class=fundus_glaucoma.FundusGlaucomaConfig,
            network_class=fundus_glaucoma.FundusGlaucomaNet,
            describe_input=_fundus_glaucoma_input,
            predict=_fundus_glaucoma_predict,
            record=_fundus_glaucoma_record,
            result_template="diagnosis/predictions/glaucoma_fundus.html",
            glaucoma_evidence=fusion.FUNDUS,
            combination="the most suspicious photograph decides: the case takes the highest glaucoma probability "
            "among its photographs",
        ),
    )
}


def network_spec(architecture: str) -> NetworkSpec:
    """The spec of a registered architecture; ValueError naming the known ones otherwise."""
    try:
        return NETWORKS[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(NETWORKS)}") from None


def spec_of(network: nn.Module) -> NetworkSpec:
    """The spec whose network class built `network`."""
    for spec in NETWORKS.values():
        if isinstance(network, spec.network_class):
            return spec
    raise ValueError(f"{type(network).__name__} is not a registered architecture")
