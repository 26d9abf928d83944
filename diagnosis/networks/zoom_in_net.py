"""Zoom-in-Net diabetic-retinopathy grader (after Wang et al., MICCAI 2017, arXiv 1706.04372).

Three parts, as in the paper:

- **M-Net** reads the whole fundus at `input_size` (the paper: about 492 px; our `full` preset 512 px)
  with a ResNet-style backbone and gives five ICDR grade scores from its pooled features.
- **A-Net** reads M-Net's last feature map. Its score branch S and gate branch A are both 1x1
  convolutions (hidden layer, ReLU, one channel per grade); the gate is a spatial softmax per grade, the
  gated map G = S * A, and the A-Net's grade scores are the spatial sums of G (an attention-weighted
  average of each grade's score map).
- The **attention map** used to zoom in is A-Net's per-cell evidence for disease over a normal
  fundus: E(x) = sum_c w_c S_c(x) - S_0(x) over the disease grades c = 1..4, w being A-Net's own
  probabilities of those grades (renormalised), so a grade the image probably does not have cannot steer
  the crops. We first used the disease-grade gates A_c themselves (weighted the same way); trained on
  the synthetic photographs of `synthetic.py` the gates stayed diffuse (an 8 x 8 softmax peaking at
  2-4x uniform) and their crops covered no more lesions than random boxes in the fundus. E's crops do
  (`AttentionLocalisationTests` in `tests/diagnosis/test_training_core.py` trains a small net on generated
  photographs, prints the share of held-out lesions its crops cover next to random boxes', and requires a
  clear margin). The gates still weight A-Net's grade scores.
- **Field of view**: a photograph is a bright disc of retina on a black border (and the square view adds
  black padding). The field of view is where the brightest channel exceeds `FOV_THRESHOLD` (of full
  scale); the attention map is zeroed outside it, and a crop is only centred where at least
  `MIN_CROP_FOV` of its box lies inside it (where no position reaches that, the best-covered ones), so
  neither the map nor the zoomed regions rest on the border.
- **Crops**: the `num_crops` highest attention peaks are chosen greedily; after each choice every cell
  whose centre lies inside the chosen crop (scaled by `suppression_scale`) is suppressed, so later crops
  look elsewhere. The crops are cut from a higher-resolution view (`highres_size`, the paper zooms into
  a larger version of the same photograph) with RoIAlign and resized to `crop_input_size`.
- **C-Net**, a second backbone, reads every crop; its features are max-pooled over the crops (a lesion in
  any crop counts) and the fused prediction is a linear layer on [M-Net features, A-Net scores, C-Net
  features]. M-Net, A-Net and C-Net keep their own heads so training can supervise each (the paper
  trains them in stages; see `diagnosis.training.zoom_in_net`).

The `full` preset is a ResNet-18 M-Net on 512 px and a ResNet-18 C-Net on four 224 px crops from a
1024 px view (about 33.5 GFLOPs an image; the variant costed in DOMAIN.md). The paper's exact backbone
(Inception-ResNet) and sizes were not reproduced; the structure is. The `small` preset shares the code
with thin three-stage backbones at 128/256 px so tests and demos run on a 2-core CPU.

Crop choice is a hard argmax and not differentiable (as in the paper): C-Net learns from the crops it is
given, A-Net learns only from its own grade scores and the fusion layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # the usual torch alias
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import roi_align

from diagnosis.networks.config import JsonConfig

ARCHITECTURE = "zoom_in_net"
NUM_GRADES = 5  # ICDR: none, mild, moderate, severe NPDR, proliferative
REFERABLE_FROM_GRADE = 2  # referable DR = moderate NPDR or worse
FOV_THRESHOLD = 0.08  # brightest channel (0-1) above which a pixel is retina, not the black border
MIN_CROP_FOV = 0.9  # share of a crop box that must lie in the field of view
_FOV_GRID = 64  # resolution of the field-of-view mask used to place crops

# Must match diagnosis.networks.inference.IMAGE_MEAN/STD (the field of view is found on the raw pixels).
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ZoomInNetConfig(JsonConfig):
    """Everything that shapes the architecture; `to_dict()` is stored with every checkpoint."""

    input_size: int = 512  # M-Net view, square pixels
    highres_size: int = 1024  # view the crops are cut from
    crop_size: int = 224  # crop side in high-resolution pixels
    crop_input_size: int = 224  # C-Net input side; crops are resized to it
    num_crops: int = 4
    m_widths: tuple[int, ...] = (64, 128, 256, 512)
    m_blocks: tuple[int, ...] = (2, 2, 2, 2)
    m_stem_pool: bool = True  # False halves M-Net's stride: a finer attention grid at 4x the later cost
    c_widths: tuple[int, ...] = (64, 128, 256, 512)
    c_blocks: tuple[int, ...] = (2, 2, 2, 2)
    anet_hidden: int = 128
    suppression_scale: float = 1.0
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("m", "c"):
            widths, blocks = getattr(self, f"{name}_widths"), getattr(self, f"{name}_blocks")
            if not widths or len(widths) != len(blocks):
                raise ValueError(f"{name}_widths and {name}_blocks must be non-empty and of equal length")
        if not 0 < self.crop_size <= self.highres_size:
            raise ValueError("crop_size must be positive and no larger than highres_size")
        if self.input_size % self.feature_stride:
            raise ValueError(f"input_size must be a multiple of M-Net's stride {self.feature_stride}")
        if self.num_crops < 1 or self.suppression_scale < 0:
            raise ValueError("num_crops must be >= 1 and suppression_scale >= 0")

    @property
    def feature_stride(self) -> int:
        # Stem (conv stride 2, max-pool stride 2), then every stage after the first halves the size.
        return (4 if self.m_stem_pool else 2) << (len(self.m_widths) - 1)

    @property
    def attention_grid_size(self) -> int:
        return self.input_size // self.feature_stride

    @classmethod
    def small(cls) -> ZoomInNetConfig:
        """CPU preset for tests and demos: 128 px M-Net, four 64 px crops from a 256 px view."""
        return cls(
            input_size=128,
            highres_size=256,
            crop_size=64,
            crop_input_size=64,
            num_crops=4,
            m_widths=(24, 48, 96),
            m_blocks=(1, 1, 1),
            c_widths=(16, 32, 64),
            c_blocks=(1, 1, 1),
            anet_hidden=48,
        )

    @classmethod
    def full(cls) -> ZoomInNetConfig:
        """GPU preset: ResNet-18 M-Net on 512 px, ResNet-18 C-Net on four 224 px crops of a 1024 px view."""
        return cls()


class ResNetBackbone(nn.Module):
    """ResNet of BasicBlocks with configurable widths; (64, 128, 256, 512) x (2, 2, 2, 2) is ResNet-18."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], stem_pool: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity(),
        )
        stages = []
        in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(count):
                block_stride = stride if block == 0 else 1
                downsample = None
                if block_stride != 1 or in_channels != width:
                    downsample = nn.Sequential(
                        nn.Conv2d(in_channels, width, kernel_size=1, stride=block_stride, bias=False),
                        nn.BatchNorm2d(width),
                    )
                layers.append(BasicBlock(in_channels, width, stride=block_stride, downsample=downsample))
                in_channels = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        features: Tensor = self.stages(self.stem(images))
        return features


class AttentionNet(nn.Module):
    """A-Net: score branch S and gate branch A (spatial softmax per grade) on M-Net's feature map."""

    def __init__(self, in_channels: int, hidden: int, num_grades: int = NUM_GRADES) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_grades, 1)
        )
        self.gate = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_grades, 1)
        )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns grade scores (B x 5), score maps S and gates A (B x 5 x h x w; each gate sums to 1)."""
        score_maps = self.score(features)
        batch, grades, height, width = score_maps.shape
        # Softmax in float32: under autocast a half-precision softmax over hundreds of cells underflows.
        gates = torch.softmax(self.gate(features).flatten(2).float(), dim=-1).view(batch, grades, height, width)
        gated = score_maps.float() * gates
        return gated.sum(dim=(2, 3)), score_maps, gates


@dataclass
class ZoomInNetOutput:
    """Network outputs for a batch. `logits`/`probabilities` are the fused prediction when crops were read."""

    logits: Tensor  # B x 5: fused, or M-Net + A-Net average when the crop path was skipped
    m_logits: Tensor
    a_logits: Tensor
    c_logits: Tensor | None
    attention_grid: Tensor  # B x h x w, disease evidence per cell (see `disease_evidence`), unnormalised
    attention: Tensor  # B x input_size x input_size, min-max normalised to [0, 1]
    peaks: Tensor  # B x k x 2 (row, column) in the attention grid
    boxes: Tensor  # B x k x 4 (x0, y0, x1, y1) as fractions of the square view

    @property
    def probabilities(self) -> Tensor:
        return torch.softmax(self.logits.float(), dim=1)

    @property
    def referable(self) -> Tensor:
        return self.probabilities[:, REFERABLE_FROM_GRADE:].sum(dim=1)


@dataclass
class WholeImageReading:
    """What M-Net and A-Net make of the whole photograph (the input to the zoom-in step)."""

    pooled: Tensor  # B x C, M-Net's pooled features
    m_logits: Tensor
    a_logits: Tensor
    attention_grid: Tensor  # B x h x w
    peaks: Tensor
    boxes: Tensor


def disease_evidence(score_maps: Tensor, a_logits: Tensor) -> Tensor:
    """Per cell: how much more the A-Net score maps support the likely disease grades than grade 0.

    E(x) = sum over grades c >= 1 of w_c S_c(x) - S_0(x), with w the A-Net's probabilities of the disease
    grades renormalised to sum to 1. B x 5 x h x w, B x 5 -> B x h x w.
    """
    weights = torch.softmax(a_logits, dim=1)[:, 1:]
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return (weights[:, :, None, None] * score_maps[:, 1:]).sum(dim=1) - score_maps[:, 0]


def field_of_view(views: Tensor) -> Tensor:
    """B x H x W float mask (1 = retina) of normalised B x 3 x H x W views."""
    mean = torch.tensor(_MEAN, device=views.device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=views.device).view(1, 3, 1, 1)
    pixels = views.detach().float() * std + mean
    return (pixels.amax(dim=1) > FOV_THRESHOLD).float()


def crop_field_of_view_share(mask: Tensor, grid: tuple[int, int], box_fraction: float) -> Tensor:
    """B x h x w: the share of the field of view (mask B x H x W) inside a square box of side `box_fraction`
    centred on each cell of an h x w grid and shifted inside the view, as `select_attention_peaks` places it."""
    batch, height, width = mask.shape
    height_cells, width_cells = grid
    half = min(box_fraction, 1.0) / 2
    # Integral image with a zero row and column in front: box sums in O(1).
    integral = F.pad(mask.float().cumsum(1).cumsum(2), (1, 0, 1, 0))
    centres_y = ((torch.arange(height_cells, device=mask.device) + 0.5) / height_cells).clamp(half, 1 - half)
    centres_x = ((torch.arange(width_cells, device=mask.device) + 0.5) / width_cells).clamp(half, 1 - half)
    y0 = ((centres_y - half) * height).round().long().clamp(0, height)
    y1 = ((centres_y + half) * height).round().long().clamp(0, height)
    x0 = ((centres_x - half) * width).round().long().clamp(0, width)
    x1 = ((centres_x + half) * width).round().long().clamp(0, width)
    sums = (
        integral[:, y1[:, None], x1[None, :]]
        - integral[:, y0[:, None], x1[None, :]]
        - integral[:, y1[:, None], x0[None, :]]
        + integral[:, y0[:, None], x0[None, :]]
    )
    area = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).clamp_min(1).float()
    return sums / area


def crop_positions_in_field_of_view(share: Tensor, minimum: float = MIN_CROP_FOV) -> Tensor:
    """B x h x w bool: cells whose crop has at least `minimum` in the field of view; where none has, the
    best-covered cells (so every image keeps somewhere to look)."""
    best = share.flatten(1).amax(dim=1).view(-1, 1, 1)
    return share >= torch.minimum(best - 1e-6, torch.full_like(best, minimum))


def select_attention_peaks(
    attention: Tensor,
    num_peaks: int,
    box_fraction: float,
    suppression_scale: float = 1.0,
    allowed: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Greedy peak picking with suppression of the chosen area.

    attention: B x h x w. Each step takes the highest unsuppressed cell, centres a square box of side
    `box_fraction` (of the view) on it, shifts the box to lie inside the view, then suppresses every cell
    whose centre lies in that box scaled by `suppression_scale` about its centre (boundary included).
    Only when every cell is suppressed does a step fall back to the best cell not yet picked. `allowed`
    (B x h x w bool, at least one True per image) restricts the peaks to those cells.
    Returns peaks (B x k x 2, row/column, long) and boxes (B x k x 4, x0 y0 x1 y1 as view fractions).
    """
    batch, height, width = attention.shape
    device = attention.device
    scores = attention.detach().float().reshape(batch, -1).clone()
    if allowed is not None:
        scores = scores.masked_fill(~allowed.reshape(batch, -1), float("-inf"))
    original = scores.clone()
    rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    centre_y = rows[:, None].expand(height, width).reshape(-1)
    centre_x = cols[None, :].expand(height, width).reshape(-1)
    half = min(box_fraction, 1.0) / 2
    reach = half * suppression_scale + 1e-6  # tolerance: a centre on the boundary counts as inside
    picked = torch.zeros_like(scores, dtype=torch.bool)
    minus_inf = torch.tensor(float("-inf"), device=device)
    all_peaks, all_boxes = [], []
    for _ in range(num_peaks):
        exhausted = torch.isinf(scores).all(dim=1, keepdim=True)
        candidates = torch.where(exhausted, original.masked_fill(picked, float("-inf")), scores)
        # Fully picked maps (num_peaks > cells) fall back to the global maximum.
        candidates = torch.where(torch.isinf(candidates).all(dim=1, keepdim=True), original, candidates)
        index = candidates.argmax(dim=1)
        picked[torch.arange(batch, device=device), index] = True
        row, col = index // width, index % width
        box_x = ((col.float() + 0.5) / width).clamp(half, 1 - half)
        box_y = ((row.float() + 0.5) / height).clamp(half, 1 - half)
        inside = ((centre_x[None, :] - box_x[:, None]).abs() <= reach) & (
            (centre_y[None, :] - box_y[:, None]).abs() <= reach
        )
        scores = torch.where(inside, minus_inf, scores)
        scores[torch.arange(batch, device=device), index] = float("-inf")
        all_peaks.append(torch.stack([row, col], dim=1))
        all_boxes.append(torch.stack([box_x - half, box_y - half, box_x + half, box_y + half], dim=1))
    return torch.stack(all_peaks, dim=1), torch.stack(all_boxes, dim=1)


class ZoomInNet(nn.Module):
    def __init__(self, config: ZoomInNetConfig) -> None:
        super().__init__()
        self.config = config
        self.m_net = ResNetBackbone(config.m_widths, config.m_blocks, config.m_stem_pool)
        self.m_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.m_net.out_channels, NUM_GRADES))
        self.a_net = AttentionNet(self.m_net.out_channels, config.anet_hidden)
        self.c_net = ResNetBackbone(config.c_widths, config.c_blocks)
        self.c_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.c_net.out_channels, NUM_GRADES))
        fused_width = self.m_net.out_channels + NUM_GRADES + self.c_net.out_channels
        self.fusion = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(fused_width, NUM_GRADES))

    def low_view(self, highres: Tensor) -> Tensor:
        """M-Net's view, derived from the high-resolution one (antialiased, like resizing the photograph)."""
        size = self.config.input_size
        if highres.shape[-1] == size and highres.shape[-2] == size:
            return highres
        return F.interpolate(highres, size=(size, size), mode="bilinear", antialias=True, align_corners=False)

    def forward(self, highres: Tensor, lowres: Tensor | None = None, read_crops: bool = True) -> ZoomInNetOutput:
        """highres: B x 3 x highres_size^2, normalised; lowres (optional) B x 3 x input_size^2.

        `read_crops=False` skips C-Net and fusion (training stages that do not need them); `logits` is then
        the mean of the M-Net and A-Net logits.
        """
        whole = self.look(self.low_view(highres) if lowres is None else lowres)
        if read_crops:
            c_logits, logits = self.zoom(highres, whole)
        else:
            c_logits, logits = None, (whole.m_logits.float() + whole.a_logits.float()) / 2
        attention = F.interpolate(
            whole.attention_grid[:, None], size=(self.config.input_size,) * 2, mode="bilinear", align_corners=False
        )[:, 0]
        # The map is shown on the photograph: scaled over the field of view, zero outside it.
        inside = field_of_view(self.low_view(highres) if lowres is None else lowres)
        retina = inside > 0
        low = torch.where(retina, attention, attention.amax(dim=(1, 2), keepdim=True)).amin(dim=(1, 2), keepdim=True)
        high = torch.where(retina, attention, low).amax(dim=(1, 2), keepdim=True)
        return ZoomInNetOutput(
            logits=logits,
            m_logits=whole.m_logits,
            a_logits=whole.a_logits,
            c_logits=c_logits,
            attention_grid=whole.attention_grid,
            attention=(attention - low) / (high - low).clamp_min(1e-12) * inside,
            peaks=whole.peaks,
            boxes=whole.boxes,
        )

    def look(self, lowres: Tensor) -> WholeImageReading:
        """M-Net and A-Net on the whole photograph, and the regions to zoom into."""
        config = self.config
        features = self.m_net(lowres)
        pooled = features.mean(dim=(2, 3))
        a_logits, score_maps, _ = self.a_net(features)
        attention_grid = disease_evidence(score_maps.detach().float(), a_logits.detach().float())
        box_fraction = config.crop_size / config.highres_size
        mask = F.adaptive_avg_pool2d(field_of_view(lowres)[:, None], _FOV_GRID)[:, 0] > 0.5
        grid_shape = (int(attention_grid.shape[1]), int(attention_grid.shape[2]))
        share = crop_field_of_view_share(mask, grid_shape, box_fraction)
        peaks, boxes = select_attention_peaks(
            attention_grid,
            config.num_crops,
            box_fraction,
            config.suppression_scale,
            allowed=crop_positions_in_field_of_view(share),
        )
        return WholeImageReading(pooled, self.m_head(pooled), a_logits, attention_grid, peaks, boxes)

    def zoom(self, highres: Tensor, whole: WholeImageReading) -> tuple[Tensor, Tensor]:
        """C-Net on the crops, then the fused prediction: returns (C-Net logits, fused logits)."""
        crops = self.crops(highres, whole.boxes)
        crop_features = self.c_net(crops).mean(dim=(2, 3))
        crop_features = crop_features.view(highres.shape[0], self.config.num_crops, -1).amax(dim=1)
        pooled = whole.pooled
        fused = torch.cat([pooled, whole.a_logits.to(pooled.dtype), crop_features.to(pooled.dtype)], dim=1)
        return self.c_head(crop_features), self.fusion(fused)

    def crops(self, highres: Tensor, boxes: Tensor) -> Tensor:
        """Cut B x k boxes (view fractions) from the high-resolution images: (B*k) x 3 x s x s."""
        batch, count, _ = boxes.shape
        scale = torch.tensor([highres.shape[-1], highres.shape[-2]] * 2, dtype=highres.dtype, device=highres.device)
        batch_index = torch.arange(batch, device=highres.device, dtype=highres.dtype).repeat_interleave(count)
        rois = torch.cat([batch_index[:, None], boxes.reshape(-1, 4).to(highres.dtype) * scale], dim=1)
        size = self.config.crop_input_size
        # aligned=True treats pixel centres at +0.5, so a box [0, 64) samples exactly pixels 0..63.
        crops: Tensor = roi_align(
            highres, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
        )
        return crops
