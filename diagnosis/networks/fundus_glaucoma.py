"""Glaucoma from a colour fundus photograph: find the optic disc, read the optic nerve head.

Glaucoma shows on a fundus photograph at the optic disc (a large, deep cup: a high cup-to-disc ratio,
rim thinning), so most published fundus-glaucoma systems work in two steps: locate the disc, then
classify a disc-centred crop. This network does the same:

- **Disc locator** (fixed, not learned): the optic disc is the brightest disc-sized region of the fundus
  in the green channel (green carries the disc's contrast on a red fundus). On a coarse 64 px view the
  green mean over a disc-sized window (so small bright spots such as hard exudates or a reflex cannot
  outweigh it) minus the mean green of the fundus pixels in a window three times as wide (a
  centre-surround contrast, so uneven illumination and the fundus edge do not win) is maximised over the
  windows that lie inside the fundus (pixels brighter than the black border); the maximum is the disc
  centre. The crop is a square of `window` (a fraction of the square view's side) around it, moved inside
  the view at the edges, cut from the `view_size` view with RoIAlign and resized to `input_size`.
- **Classifier**: a ResNet of BasicBlocks (the Zoom-in-Net backbone; widths and depths are config) on
  the crop, global average pooling, dropout and one logit for glaucoma.

The disc box is returned with every prediction, so the case page can show where the network looked.
The locator is a convention that works on typical 30-50 degree disc- or macula-centred photographs; a
photograph without a visible disc (or with a larger bright artefact) gets a box elsewhere, and the page
shows that box. Presets: `small` (a 256 px view, 64 px crops, thin backbone) for tests and demos on a
CPU, `full` (a 1024 px view, 224 px crops, ResNet-18) for GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # the usual torch alias
from torch import Tensor, nn
from torchvision.ops import roi_align

from diagnosis.networks.config import JsonConfig
from diagnosis.networks.zoom_in_net import ResNetBackbone

ARCHITECTURE = "fundus_glaucoma"

# Must match diagnosis.networks.inference.IMAGE_MEAN/STD (the locator undoes the normalisation).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
LOCATOR_SIZE = 64  # side of the coarse view the disc is found on


@dataclass(frozen=True)
class FundusGlaucomaConfig(JsonConfig):
    view_size: int = 1024  # square view of the whole photograph the crop is cut from
    window: float = 0.25  # crop side as a fraction of the view's side
    disc_fraction: float = 0.09  # expected disc diameter as a fraction of the view's side (locator window)
    input_size: int = 224  # classifier input side
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if not self.widths or len(self.widths) != len(self.blocks):
            raise ValueError("widths and blocks must be non-empty and of equal length")
        if not 0.0 < self.window <= 1.0 or not 0.0 < self.disc_fraction < self.window:
            raise ValueError("window must be in (0, 1] and disc_fraction in (0, window)")
        if self.view_size < 32 or self.input_size < 16:
            raise ValueError("view_size must be >= 32 and input_size >= 16")

    @classmethod
    def small(cls) -> FundusGlaucomaConfig:
        """CPU preset for tests and demos: 64 px disc crops from a 256 px view, a thin three-stage backbone."""
        return cls(view_size=256, input_size=64, widths=(24, 48, 96), blocks=(1, 1, 1))

    @classmethod
    def full(cls) -> FundusGlaucomaConfig:
        """GPU preset: 224 px disc crops from a 1024 px view, ResNet-18."""
        return cls()


@dataclass
class FundusGlaucomaOutput:
    logits: Tensor  # B
    boxes: Tensor  # B x 4 (x0, y0, x1, y1), fractions of the square view

    @property
    def probabilities(self) -> Tensor:
        return torch.sigmoid(self.logits.float())


def locate_optic_disc(views: Tensor, config: FundusGlaucomaConfig) -> Tensor:
    """Disc-centred crop boxes (B x 4, fractions of the view) for normalised B x 3 x S x S views."""
    mean = torch.tensor(_MEAN, device=views.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=views.device).view(1, 3, 1, 1)
    with torch.no_grad():
        pixels = (views.float() * std + mean).clamp(0, 1)
        # Green carries the disc's contrast on a red fundus (the usual channel in retinal image analysis).
        green = F.adaptive_avg_pool2d(pixels[:, 1:2], LOCATOR_SIZE)
        fundus = (F.adaptive_avg_pool2d(pixels.max(dim=1, keepdim=True).values, LOCATOR_SIZE) > 0.08).float()
        kernel = max(3, round(LOCATOR_SIZE * config.disc_fraction)) | 1  # odd, so the output keeps its size
        surround = 3 * kernel

        def local_mean(values: Tensor, size: int) -> Tensor:
            return F.avg_pool2d(values, size, stride=1, padding=size // 2, count_include_pad=False)

        # Centre-surround: a disc-sized window's mean green against the fundus around it, so uneven
        # illumination (a bright rim, a lit lower half) does not win; the surround counts fundus pixels
        # only, so the fundus edge does not either, and windows that leave the fundus are excluded.
        centre = local_mean(green, kernel)
        fundus_share = local_mean(fundus, kernel)
        around = local_mean(green * fundus, surround) / local_mean(fundus, surround).clamp_min(1e-3)
        smoothed = torch.where(fundus_share > 0.95, centre - around, torch.full_like(centre, -1.0))
        flat = smoothed.flatten(1).argmax(dim=1)
        rows = torch.div(flat, LOCATOR_SIZE, rounding_mode="floor").float()
        columns = (flat % LOCATOR_SIZE).float()
        centre_x = (columns + 0.5) / LOCATOR_SIZE
        centre_y = (rows + 0.5) / LOCATOR_SIZE
        half = config.window / 2
        x0 = (centre_x - half).clamp(0.0, 1.0 - config.window)
        y0 = (centre_y - half).clamp(0.0, 1.0 - config.window)
        return torch.stack([x0, y0, x0 + config.window, y0 + config.window], dim=1)


def crop_boxes(views: Tensor, boxes: Tensor, output_size: int) -> Tensor:
    """Cut each view's box (fractions) and resize it to output_size (B x 3 x output_size^2)."""
    side = views.shape[-1]
    index = torch.arange(views.shape[0], device=views.device, dtype=views.dtype)[:, None]
    rois = torch.cat([index, boxes.to(views.dtype) * side], dim=1)
    crops: Tensor = roi_align(views, rois, output_size=output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return crops


class FundusGlaucomaNet(nn.Module):
    def __init__(self, config: FundusGlaucomaConfig | None = None) -> None:
        super().__init__()
        self.config = config or FundusGlaucomaConfig()
        self.backbone = ResNetBackbone(self.config.widths, self.config.blocks)
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(self.backbone.out_channels, 1)

    def classify(self, crops: Tensor) -> Tensor:
        """Glaucoma logits (B) for disc crops already cut (B x 3 x input_size^2, normalised)."""
        features = F.adaptive_avg_pool2d(self.backbone(crops), 1).flatten(1)
        logits: Tensor = self.head(self.dropout(features))
        return logits.squeeze(1)

    def crops(self, views: Tensor) -> tuple[Tensor, Tensor]:
        """(disc crops, boxes) for normalised views of the whole photograph."""
        boxes = locate_optic_disc(views, self.config)
        return crop_boxes(views, boxes, self.config.input_size), boxes

    def forward(self, views: Tensor) -> FundusGlaucomaOutput:
        crops, boxes = self.crops(views)
        return FundusGlaucomaOutput(logits=self.classify(crops), boxes=boxes)
