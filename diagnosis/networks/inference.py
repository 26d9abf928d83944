"""Running the diagnostic networks: device, threads, preprocessing, batching, checkpoints.

Pure torch/numpy/Pillow; the Celery tasks and the model registry call these.

- Device: CUDA when available (production GPU workers), CPU otherwise. On CUDA the forward pass runs
  under autocast in bfloat16 where the GPU supports it, float16 otherwise; on CPU in float32 (CPU
  autocast to bfloat16 is slower than float32 on the CPUs we run on and changes results).
- Threads: `configure_threads` sets torch's intra-op threads to cores / worker concurrency. OpenMP reads
  OMP_WAIT_POLICY once, when its runtime loads (at `import torch`), so PASSIVE must be in the worker's
  environment before Python starts; the function warns when it is not, because busy-waiting OpenMP
  threads slow inference 10-20x as soon as any other process is busy.
- Batching: `run_in_batches` prepares every item on its own, runs the prepared items in batches, and when
  a batch fails re-runs its items one at a time, so one bad item gives one `ItemError` and the others
  still get results.

Checkpoints (saving, loading, refusing a state dict that does not fit) are in `checkpoints`; which network
each architecture name means is in `specs`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F  # the usual torch alias
from PIL import Image
from torch import Tensor, nn

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaNet
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig

# No pretrained weights are used, so these are conventions rather than requirements; ImageNet's
# statistics keep the door open to initialising from ImageNet weights later without re-deriving them.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
MIN_IMAGE_SIDE = 32


T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


class InvalidInput(ValueError):
    """An input the networks cannot read (wrong shape, type, size or values)."""


# --- device, precision, threads --------------------------------------------------------------------


def select_device(preferred: str | None = None) -> torch.device:
    """`preferred` ("cpu", "cuda", "cuda:1") wins when usable; otherwise CUDA if available, else CPU."""
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {preferred!r} requested but CUDA is not available")
        return device
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def prepare_for_inference(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Eval mode, on the device, weights in channels-last layout.

    Channels-last is what oneDNN (CPU) and cuDNN's tensor-core kernels work in (`make bench` times the
    networks in this layout), results equal to the default layout's up to float rounding. `predict_*`
    convert their input batches to match.
    """
    device = device or select_device()
    return model.to(device=device).to(memory_format=torch.channels_last).eval()


def to_device(batch: Tensor, device: torch.device) -> Tensor:
    """Move an image batch to the device in channels-last layout (see `prepare_for_inference`)."""
    return batch.to(device=device, memory_format=torch.channels_last)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision type for this device, or None for full precision (CPU)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass(frozen=True)
class ThreadSettings:
    threads: int
    omp_wait_policy: str | None


def available_cores() -> int:
    """Cores this process may run on (the cgroup/affinity view, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None, *, concurrency: int = 1) -> ThreadSettings:
    """Set torch's intra-op threads: `threads`, or available cores divided by the worker concurrency."""
    if threads is None:
        threads = available_cores() // max(concurrency, 1)
    threads = max(int(threads), 1)
    torch.set_num_threads(threads)
    policy = os.environ.get("OMP_WAIT_POLICY")
    if (policy or "").upper() != "PASSIVE":
        warnings.warn(
            "OMP_WAIT_POLICY is not PASSIVE: OpenMP threads busy-wait and inference slows 10-20x when other "
            "processes are busy. Set OMP_WAIT_POLICY=PASSIVE in the worker's environment before it starts "
            "(setting it from Python after torch is imported has no effect).",
            RuntimeWarning,
            stacklevel=2,
        )
    return ThreadSettings(threads=threads, omp_wait_policy=policy)


# --- preprocessing ---------------------------------------------------------------------------------


def _to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise InvalidInput(f"expected an H x W x 3 image, got an array of shape {array.shape}")
        array = array[:, :, :3]
        if array.dtype != np.uint8:
            raise InvalidInput(f"expected uint8 pixels, got {array.dtype}")
    else:
        raise InvalidInput(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    if min(array.shape[:2]) < MIN_IMAGE_SIDE:
        raise InvalidInput(f"image is {array.shape[1]} x {array.shape[0]} px, below the {MIN_IMAGE_SIDE} px minimum")
    return np.ascontiguousarray(array)


def normalise_images(images: Tensor) -> Tensor:
    """uint8 (or 0-255 float) B x 3 x H x W -> float32 normalised with IMAGE_MEAN / IMAGE_STD."""
    mean = torch.tensor(IMAGE_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


@dataclass(frozen=True)
class ViewGeometry:
    """How the square network view sits on the original photograph (padding centres the photo)."""

    original_width: int
    original_height: int

    @property
    def side(self) -> int:
        return max(self.original_width, self.original_height)

    @property
    def offset_x(self) -> float:
        return (self.side - self.original_width) / 2

    @property
    def offset_y(self) -> float:
        return (self.side - self.original_height) / 2

    def box_to_original(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A box in view fractions (x0, y0, x1, y1) -> original-image pixels, clipped to the image."""
        x0, y0, x1, y1 = (float(v) * self.side for v in box)
        width, height = float(self.original_width), float(self.original_height)
        return (
            min(max(x0 - self.offset_x, 0.0), width),
            min(max(y0 - self.offset_y, 0.0), height),
            min(max(x1 - self.offset_x, 0.0), width),
            min(max(y1 - self.offset_y, 0.0), height),
        )

    def map_to_original(self, view_map: Tensor, max_side: int | None = None) -> np.ndarray:
        """A square H x W map over the view -> a map over the photograph (optionally downscaled)."""
        scale = 1.0 if max_side is None else min(1.0, max_side / self.side)
        side = max(round(self.side * scale), 1)
        resized = F.interpolate(view_map[None, None].float(), size=(side, side), mode="bilinear", align_corners=False)
        x0, y0 = round(self.offset_x * scale), round(self.offset_y * scale)
        width = max(round(self.original_width * scale), 1)
        height = max(round(self.original_height * scale), 1)
        return resized[0, 0, y0 : y0 + height, x0 : x0 + width].clamp(0, 1).cpu().numpy()


@dataclass(frozen=True)
class FundusInput:
    highres: Tensor  # 3 x S x S float32, normalised
    geometry: ViewGeometry


def preprocess_fundus(image: Image.Image | np.ndarray, config: ZoomInNetConfig) -> FundusInput:
    """Pad the photograph to a square with black (the fundus surround), resize to the high-resolution view."""
    return square_view(image, config.highres_size)


def square_view(image: Image.Image | np.ndarray, size: int) -> FundusInput:
    """The photograph padded to a square with black (the fundus surround) and resized to `size`."""
    array = _to_rgb_array(image)
    height, width = array.shape[:2]
    geometry = ViewGeometry(original_width=width, original_height=height)
    side = geometry.side
    square = np.zeros((side, side, 3), dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = array
    # Offsets are recomputed as floats in ViewGeometry; an odd difference puts the photo half a pixel
    # off there, below the network's resolution.
    # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases like a photo resize.
    resized = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
    tensor = torch.from_numpy(resized.copy()).permute(2, 0, 1)[None]
    return FundusInput(highres=normalise_images(tensor)[0], geometry=geometry)


@dataclass(frozen=True)
class VisualFieldItem:
    """One reliable field: the PD probability plot (image) and its global indices, raw units."""

    plot: Image.Image | np.ndarray
    vfi: float  # %
    md: float  # dB
    psd: float  # dB


@dataclass(frozen=True)
class VisualFieldInput:
    plot: Tensor  # 3 x S x S float32, normalised
    indices: Tensor  # 3: VFI, MD, PSD (raw; the network normalises them)


def preprocess_visual_field(item: VisualFieldItem, config: VFGlaucomaConfig) -> VisualFieldInput:
    values = (item.vfi, item.md, item.psd)
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
        raise InvalidInput(f"VFI, MD and PSD must be finite numbers, got {values}")
    if not 0.0 <= item.vfi <= 100.0:
        raise InvalidInput(f"VFI must be a percentage, got {item.vfi}")
    array = _to_rgb_array(item.plot)
    size = config.input_size
    resized = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.BILINEAR))
    plot = normalise_images(torch.from_numpy(resized.copy()).permute(2, 0, 1)[None])[0]
    return VisualFieldInput(plot=plot, indices=torch.tensor(values, dtype=torch.float32))


# --- batching --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemError:
    """An item that could not be processed; the others in its batch are unaffected."""

    index: int
    error: str  # exception class name
    message: str


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_in_batches(
    items: Sequence[T],
    prepare: Callable[[T], P],
    forward: Callable[[list[P]], list[R | ItemError]],
    batch_size: int,
    propagate: tuple[type[BaseException], ...] = (),
) -> list[R | ItemError]:
    """Results in input order; a failing item (in `prepare` or `forward`) becomes an `ItemError`.

    `forward` gets a list of prepared items and returns one result (or ItemError) per item. When it
    raises for a batch, each item of that batch is run alone, so only the item that fails alone fails.
    ItemErrors that `forward` returns get the item's index in `items`. Exceptions of the `propagate` types
    (a worker's time limit, say) are never an item's fault: they stop the whole run.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    results: list[R | ItemError | None] = [None] * len(items)
    prepared: list[tuple[int, P]] = []
    for index, item in enumerate(items):
        try:
            prepared.append((index, prepare(item)))
        except propagate:
            raise
        except Exception as exc:  # any failure of one item is that item's result
            results[index] = ItemError(index, type(exc).__name__, str(exc))

    def settle(indices: list[int], outputs: list[R | ItemError]) -> None:
        if len(outputs) != len(indices):
            raise RuntimeError(f"forward returned {len(outputs)} results for {len(indices)} items")
        for index, output in zip(indices, outputs, strict=True):
            if isinstance(output, ItemError):
                output = ItemError(index, output.error, output.message)
            results[index] = output

    for batch in _chunks(prepared, batch_size):
        indices = [index for index, _ in batch]
        try:
            settle(indices, forward([value for _, value in batch]))
        except propagate:
            raise
        except Exception:  # isolate the failing item below
            for index, value in batch:
                try:
                    settle([index], forward([value]))
                except propagate:
                    raise
                except Exception as exc:
                    results[index] = ItemError(index, type(exc).__name__, str(exc))
    return [result for result in results if result is not None]


# --- predictions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FundusPrediction:
    grade_probabilities: tuple[float, float, float, float, float]  # ICDR 0-4
    referable_probability: float  # P(grade >= 2)
    attention: np.ndarray  # over the photograph (H x W, or downscaled), float32 in [0, 1]
    boxes: tuple[tuple[float, float, float, float], ...]  # crops, original-image pixels (x0, y0, x1, y1)

    @property
    def grade(self) -> int:
        return int(np.argmax(self.grade_probabilities))


@dataclass(frozen=True)
class VisualFieldPrediction:
    glaucoma_probability: float


@dataclass(frozen=True)
class FundusGlaucomaPrediction:
    glaucoma_probability: float
    disc_box: tuple[float, float, float, float]  # the crop the classifier read, original-image pixels


def predict_fundus(
    model: ZoomInNet,
    images: Sequence[Image.Image | np.ndarray],
    *,
    batch_size: int = 8,
    device: torch.device | None = None,
    attention_max_side: int | None = None,
    propagate: tuple[type[BaseException], ...] = (),
) -> list[FundusPrediction | ItemError]:
    """Grade photographs. `attention_max_side` caps the attention map's size (None: full photo size).

    Call `prepare_for_inference(model)` once first. Batch size: on GPUs as large as memory allows; on
    CPUs batching pays for the small preset (4x at 32) but not for the full one, which is compute-bound
    (use 1-2 there; see tests/benchmarks/bench_networks.py).
    """
    device = device or next(model.parameters()).device
    model.eval()
    config = model.config

    def forward(batch: list[FundusInput]) -> list[FundusPrediction | ItemError]:
        highres = to_device(torch.stack([item.highres for item in batch]), device)
        with torch.inference_mode(), autocast(device):
            output = model(highres)
        probabilities = output.probabilities.float().cpu()
        referable = output.referable.float().cpu()
        boxes = output.boxes.float().cpu()
        results: list[FundusPrediction | ItemError] = []
        for position, item in enumerate(batch):
            if not torch.isfinite(probabilities[position]).all():
                results.append(ItemError(-1, "NonFiniteOutput", "the network produced NaN/inf probabilities"))
                continue
            results.append(
                FundusPrediction(
                    grade_probabilities=tuple(float(p) for p in probabilities[position]),  # type: ignore[arg-type]
                    referable_probability=float(referable[position]),
                    attention=item.geometry.map_to_original(output.attention[position], attention_max_side),
                    boxes=tuple(item.geometry.box_to_original(box) for box in boxes[position].tolist()),
                )
            )
        return results

    return run_in_batches(images, lambda image: preprocess_fundus(image, config), forward, batch_size, propagate)


def predict_visual_fields(
    model: VFGlaucomaNet,
    items: Sequence[VisualFieldItem],
    *,
    batch_size: int = 32,
    device: torch.device | None = None,
    propagate: tuple[type[BaseException], ...] = (),
) -> list[VisualFieldPrediction | ItemError]:
    device = device or next(model.parameters()).device
    model.eval()
    config = model.config

    def forward(batch: list[VisualFieldInput]) -> list[VisualFieldPrediction | ItemError]:
        plots = to_device(torch.stack([item.plot for item in batch]), device)
        indices = torch.stack([item.indices for item in batch]).to(device)
        with torch.inference_mode(), autocast(device):
            probabilities = model.predict_proba(plots, indices).float().cpu()
        return [
            VisualFieldPrediction(float(p))
            if math.isfinite(float(p))
            else ItemError(-1, "NonFiniteOutput", "the network produced a NaN/inf probability")
            for p in probabilities
        ]

    return run_in_batches(items, lambda item: preprocess_visual_field(item, config), forward, batch_size, propagate)


def predict_fundus_glaucoma(
    model: FundusGlaucomaNet,
    images: Sequence[Image.Image | np.ndarray],
    *,
    batch_size: int = 16,
    device: torch.device | None = None,
    propagate: tuple[type[BaseException], ...] = (),
) -> list[FundusGlaucomaPrediction | ItemError]:
    """Glaucoma probability of photographs, with the optic-disc crop each was judged on."""
    device = device or next(model.parameters()).device
    model.eval()
    size = model.config.view_size

    def forward(batch: list[FundusInput]) -> list[FundusGlaucomaPrediction | ItemError]:
        views = to_device(torch.stack([item.highres for item in batch]), device)
        with torch.inference_mode(), autocast(device):
            output = model(views)
        probabilities = output.probabilities.float().cpu()
        boxes = output.boxes.float().cpu()
        return [
            FundusGlaucomaPrediction(float(p), item.geometry.box_to_original(box))
            if math.isfinite(float(p))
            else ItemError(-1, "NonFiniteOutput", "the network produced a NaN/inf probability")
            for p, box, item in zip(probabilities, boxes.tolist(), batch, strict=True)
        ]

    return run_in_batches(images, lambda image: square_view(image, size), forward, batch_size, propagate)
