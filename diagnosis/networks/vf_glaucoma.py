"""Glaucoma from a Humphrey 24-2 visual field (after Li et al. 2018, BMC Medical Imaging).

The input is the Pattern Deviation (PD) probability plot as an image plus three global indices.
A VGG16 reads the plot; its fc7 is reduced from 4096 to 200 units (the paper's change, so the image
features do not swamp the three indices), the 200 features are concatenated with VFI, MD and PSD, and
one linear unit gives the logit of glaucoma.

VFI, MD and PSD enter normalised: (value - centre) / scale with fixed, documented constants stored in the
config (and so in every checkpoint), roughly centred on a glaucoma clinic's population so the three
inputs start on the same scale as the ReLU features. Callers pass the raw values (VFI in %, MD and PSD
in dB). Unreliable fields must be excluded by the caller before they reach this network (the paper
excluded them; see `diagnosis.networks.fusion`).

The `full` preset is torchvision's VGG16 (`vgg16(weights=None)`; never pretrained weights: the platform
has no network access and must not download) at 224 px. The `small` preset keeps the VGG16 layer
pattern with channel widths scaled down and a 64 px plot, so tests run on a CPU in milliseconds.

The plot itself is drawn by the upload pipeline (`trials.uploads.visual_field.render_pattern_deviation_plot`,
stored with every field at 224 px); training (`diagnosis.training.datasets`) and the workers read that same
image, resized to `input_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models import vgg16
from torchvision.models.vgg import make_layers

from diagnosis.networks.config import JsonConfig

ARCHITECTURE = "vf_glaucoma"

# VGG16 ("configuration D"): convolution widths, "M" = 2x2 max-pool.
VGG16_LAYERS: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)


@dataclass(frozen=True)
class VFGlaucomaConfig(JsonConfig):
    input_size: int = 224
    width_multiplier: float = 1.0
    pool_size: int = 7  # adaptive pooling before fc6 (VGG16: 7 x 7)
    fc6_units: int = 4096
    fc7_units: int = 200  # the paper's reduction from 4096
    dropout: float = 0.5
    # (VFI %, MD dB, PSD dB): value -> (value - centre) / scale
    index_centres: tuple[float, float, float] = (80.0, -6.0, 5.0)
    index_scales: tuple[float, float, float] = (20.0, 7.0, 4.0)

    def __post_init__(self) -> None:
        if self.input_size < 32 or self.input_size % 32:
            raise ValueError("input_size must be a positive multiple of 32 (five 2x2 poolings)")
        if self.width_multiplier <= 0 or min(self.index_scales) <= 0:
            raise ValueError("width_multiplier and index_scales must be positive")

    @property
    def is_true_vgg16(self) -> bool:
        return self.width_multiplier == 1.0 and self.pool_size == 7 and self.fc6_units == 4096

    @classmethod
    def small(cls) -> VFGlaucomaConfig:
        return cls(input_size=64, width_multiplier=0.125, pool_size=2, fc6_units=256, dropout=0.3)

    @classmethod
    def full(cls) -> VFGlaucomaConfig:
        return cls()


class VFGlaucomaNet(nn.Module):
    index_centres: Tensor  # buffers (registered in __init__)
    index_scales: Tensor
    """forward(plots B x 3 x S x S normalised, indices B x 3 raw VFI/MD/PSD) -> glaucoma logits B."""

    def __init__(self, config: VFGlaucomaConfig) -> None:
        super().__init__()
        self.config = config
        if config.is_true_vgg16:
            # torchvision's VGG16 itself: its convolutions and its fc6 (25088 -> 4096) are kept.
            vgg = vgg16(weights=None)
            features, fc6 = vgg.features, vgg.classifier[0]
        else:
            # The same builder at reduced width. VGG() is not built here: its fixed 25088 x 4096 fc6
            # would be allocated only to be thrown away.
            widths = [v if v == "M" else max(1, round(int(v) * config.width_multiplier)) for v in VGG16_LAYERS]
            features = make_layers(widths, batch_norm=False)
            for module in features.modules():
                if isinstance(module, nn.Conv2d):  # torchvision's VGG initialisation
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            channels = [m.out_channels for m in features if isinstance(m, nn.Conv2d)][-1]
            fc6 = nn.Linear(channels * config.pool_size**2, config.fc6_units)
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((config.pool_size, config.pool_size))
        fc7 = nn.Linear(config.fc6_units, config.fc7_units)
        self.classifier = nn.Sequential(
            fc6,
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            fc7,
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
        )
        for layer in (fc6, fc7):  # torchvision's VGG init for its linear layers
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.zeros_(layer.bias)
        self.head = nn.Linear(config.fc7_units + 3, 1)
        self.register_buffer("index_centres", torch.tensor(config.index_centres), persistent=False)
        self.register_buffer("index_scales", torch.tensor(config.index_scales), persistent=False)

    def normalise_indices(self, indices: Tensor) -> Tensor:
        return (indices.float() - self.index_centres) / self.index_scales

    def forward(self, plots: Tensor, indices: Tensor) -> Tensor:
        features = self.classifier(torch.flatten(self.avgpool(self.features(plots)), 1))
        combined = torch.cat([features, self.normalise_indices(indices).to(features.dtype)], dim=1)
        logits: Tensor = self.head(combined)
        return logits[:, 0]

    def predict_proba(self, plots: Tensor, indices: Tensor) -> Tensor:
        return torch.sigmoid(self.forward(plots, indices).float())
