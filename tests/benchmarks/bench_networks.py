"""Throughput and cost of the diagnostic networks: `python -m tests.benchmarks.bench_networks`.

For Zoom-in-Net, the VF glaucoma net and the fundus glaucoma net, small and full presets, it prints:
- GFLOPs per image (torch.utils.flop_counter.FlopCounterMode; one multiply-add = 2 FLOPs),
- CPU images/s one image per forward call and batched, and their ratio,
- on a machine with CUDA, GPU images/s batched under autocast (bfloat16 where supported).

Inputs are random tensors already at the network's size, so the figures are the networks' own cost
(decoding and resizing photographs come on top). Models and inputs are in channels-last layout, as
`diagnosis.networks.inference.prepare_for_inference` sets them up for production. Run it on a quiet machine with
OMP_WAIT_POLICY=PASSIVE; `--json PATH` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig, FundusGlaucomaNet
from diagnosis.networks.inference import autocast, autocast_dtype, configure_threads, prepare_for_inference, to_device
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, torch.device], tuple[torch.Tensor, ...]]
    cpu_batch: int
    gpu_batch: int


def zoom_case(name: str, config: ZoomInNetConfig, cpu_batch: int, gpu_batch: int) -> Case:
    def inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, config.highres_size, config.highres_size, device=device),)

    return Case(name, lambda: ZoomInNet(config), inputs, cpu_batch, gpu_batch)


def vf_case(name: str, config: VFGlaucomaConfig, cpu_batch: int, gpu_batch: int) -> Case:
    def inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        plots = torch.randn(batch, 3, config.input_size, config.input_size, device=device)
        indices = torch.tensor([[85.0, -4.0, 4.0]], device=device).expand(batch, 3).contiguous()
        return plots, indices

    return Case(name, lambda: VFGlaucomaNet(config), inputs, cpu_batch, gpu_batch)


def fundus_glaucoma_case(name: str, config: FundusGlaucomaConfig, cpu_batch: int, gpu_batch: int) -> Case:
    def inputs(batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, 3, config.view_size, config.view_size, device=device),)

    return Case(name, lambda: FundusGlaucomaNet(config), inputs, cpu_batch, gpu_batch)


CASES = [
    zoom_case("zoom_in_net/small (128 px + 4 x 64 px crops of 256 px)", ZoomInNetConfig.small(), 32, 256),
    zoom_case("zoom_in_net/full (512 px + 4 x 224 px crops of 1024 px)", ZoomInNetConfig.full(), 4, 64),
    vf_case("vf_glaucoma/small (VGG16 x 1/8 at 64 px)", VFGlaucomaConfig.small(), 64, 512),
    vf_case("vf_glaucoma/full (VGG16 at 224 px)", VFGlaucomaConfig.full(), 4, 128),
    fundus_glaucoma_case("fundus_glaucoma/small (64 px disc crop of 256 px)", FundusGlaucomaConfig.small(), 64, 512),
    fundus_glaucoma_case(
        "fundus_glaucoma/full (ResNet-18 on 224 px disc crop of 1024 px)", FundusGlaucomaConfig.full(), 8, 256
    ),
]


def gflops_per_image(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 1e9 / inputs[0].shape[0]


def images_per_second(
    model: nn.Module, case: Case, batch: int, device: torch.device, min_images: int, min_seconds: float
) -> float:
    inputs = tuple(to_device(x, device) if x.ndim == 4 else x for x in case.inputs(batch, device))
    with torch.inference_mode(), autocast(device):
        model(*inputs)  # warm-up: allocator, cuDNN/oneDNN kernel choice
        if device.type == "cuda":
            torch.cuda.synchronize()
        done, started = 0, time.perf_counter()
        while done < min_images or time.perf_counter() - started < min_seconds:
            model(*inputs)
            done += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
    return done / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (noisier)")
    parser.add_argument("--only", default="", help="run cases whose name contains this text")
    parser.add_argument("--skip-cpu", action="store_true", help="GPU figures only")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--device-check",
        metavar="DEVICE",
        help="instead: train/predict briefly on DEVICE (e.g. cuda) and compare with CPU",
    )
    args = parser.parse_args(argv)
    if args.device_check:
        return device_check(torch.device(args.device_check))

    settings = configure_threads()
    seconds = 1.0 if args.quick else 3.0
    print(f"torch {torch.__version__}; CPU threads {settings.threads}; OMP_WAIT_POLICY={settings.omp_wait_policy}")
    cuda = torch.cuda.is_available()
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name()} (autocast {autocast_dtype(torch.device('cuda'))})")
    results = []
    for case in CASES:
        if args.only and args.only not in case.name:
            continue
        torch.manual_seed(0)
        model = prepare_for_inference(case.build(), torch.device("cpu"))
        row: dict[str, object] = {"case": case.name}
        row["gflops_per_image"] = gflops_per_image(model, case.inputs(1, torch.device("cpu")))
        if not args.skip_cpu:
            cpu = torch.device("cpu")
            single = images_per_second(model, case, 1, cpu, min_images=3, min_seconds=seconds)
            batched = images_per_second(
                model, case, case.cpu_batch, cpu, min_images=case.cpu_batch, min_seconds=seconds
            )
            row |= {"cpu_single_ips": single, "cpu_batched_ips": batched, "cpu_batch": case.cpu_batch}
            row["cpu_batched_over_single"] = batched / single
        if cuda:
            gpu = torch.device("cuda")
            prepare_for_inference(model, gpu)
            row["gpu_batch"] = case.gpu_batch
            row["gpu_single_ips"] = images_per_second(model, case, 1, gpu, min_images=20, min_seconds=seconds)
            row["gpu_batched_ips"] = images_per_second(
                model, case, case.gpu_batch, gpu, min_images=2 * case.gpu_batch, min_seconds=seconds
            )
            model.to("cpu")
            torch.cuda.empty_cache()
        results.append(row)
        print(format_row(row), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"threads": settings.threads, "cuda": cuda, "results": results}, handle, indent=2)
    return 0


def device_check(device: torch.device) -> int:
    """Exercise the training and prediction paths on `device` (autocast there) against float32 CPU."""
    import numpy as np

    from diagnosis.networks.inference import ItemError, VisualFieldItem, predict_fundus, predict_visual_fields
    from diagnosis.networks.synthetic import generate_fundus_set
    from diagnosis.training.core import (
        DRTrainingPlan,
        VFTrainingPlan,
        fundus_tensors,
        train_vf_glaucoma,
        train_zoom_in_net,
    )

    configure_threads()
    print(f"device check on {device} (autocast {autocast_dtype(device)})")
    samples = generate_fundus_set(64, seed=0, size=256)
    images, grades = fundus_tensors(samples)
    torch.manual_seed(0)
    model = ZoomInNet(ZoomInNetConfig.small())
    plan = DRTrainingPlan(m_epochs=2, a_epochs=1, c_epochs=1, joint_epochs=1, batch_size=16)
    result = train_zoom_in_net(model, images, grades, plan=plan, device=device, validation=(images, grades))
    losses = [round(entry["loss"], 3) for entry in result.history]
    print(f"zoom_in_net/small trained on {device}: losses {losses}, {result.seconds:.1f} s, metrics {result.metrics}")
    photos = [sample.image for sample in samples[:16]] + ["not an image"]
    on_device = predict_fundus(prepare_for_inference(model, device), photos, batch_size=8)
    on_cpu = predict_fundus(prepare_for_inference(model, torch.device("cpu")), photos, batch_size=8)
    assert isinstance(on_device[-1], ItemError) and isinstance(on_cpu[-1], ItemError)
    difference = max(
        float(np.abs(np.subtract(a.grade_probabilities, b.grade_probabilities)).max())
        for a, b in zip(on_device[:-1], on_cpu[:-1], strict=True)
    )
    same_boxes = np.mean([a.boxes == b.boxes for a, b in zip(on_device[:-1], on_cpu[:-1], strict=True)])
    print(
        f"predict_fundus {device} vs CPU float32: max |dp| {difference:.4f}; same boxes in {same_boxes:.0%} of images"
    )

    config = VFGlaucomaConfig.small()
    from tests.support.networks import pd_plot

    plots = torch.from_numpy(np.stack([pd_plot([0.005 if p < i % 20 else 1.0 for p in range(54)]) for i in range(64)]))
    indices = torch.tensor([[90.0 - i % 20, -(i % 20) / 2, 2.0 + i % 20 / 3] for i in range(64)])
    labels = torch.tensor([int(i % 20 > 8) for i in range(64)])
    vf_model = VFGlaucomaNet(config)
    vf_result = train_vf_glaucoma(vf_model, plots, indices, labels, plan=VFTrainingPlan(epochs=3), device=device)
    print(f"vf_glaucoma/small trained on {device}: losses {[round(e['loss'], 3) for e in vf_result.history]}")
    fields = [VisualFieldItem(plots[i].permute(1, 2, 0).numpy(), 90.0, -2.0, 3.0) for i in range(4)]
    predictions = predict_visual_fields(prepare_for_inference(vf_model, device), fields)
    print(f"predict_visual_fields on {device}: {[round(p.glaucoma_probability, 3) for p in predictions]}")

    from diagnosis.networks.inference import predict_fundus_glaucoma
    from diagnosis.networks.synthetic import generate_glaucoma_fundus_set
    from diagnosis.training.core import FundusGlaucomaTrainingPlan, train_fundus_glaucoma

    discs = generate_glaucoma_fundus_set(96, seed=0, size=256)
    disc_images, _ = fundus_tensors(discs)
    disc_labels = torch.tensor([int(sample.glaucoma) for sample in discs])
    fg_model = FundusGlaucomaNet(FundusGlaucomaConfig.small())
    fg_result = train_fundus_glaucoma(
        fg_model,
        disc_images[:64],
        disc_labels[:64],
        plan=FundusGlaucomaTrainingPlan(epochs=4),
        device=device,
        validation=(disc_images[64:], disc_labels[64:]),
    )
    print(
        f"fundus_glaucoma/small trained on {device}: losses {[round(e['loss'], 3) for e in fg_result.history]}, "
        f"held-out {fg_result.metrics}"
    )
    photos = [sample.image for sample in discs[64:80]]
    fg_device = predict_fundus_glaucoma(prepare_for_inference(fg_model, device), photos)
    fg_cpu = predict_fundus_glaucoma(prepare_for_inference(fg_model, torch.device("cpu")), photos)
    fg_difference = max(
        abs(a.glaucoma_probability - b.glaucoma_probability) for a, b in zip(fg_device, fg_cpu, strict=True)
    )
    same_discs = np.mean([a.disc_box == b.disc_box for a, b in zip(fg_device, fg_cpu, strict=True)])
    print(
        f"predict_fundus_glaucoma {device} vs CPU float32: max |dp| {fg_difference:.4f}; "
        f"same disc box in {same_discs:.0%} of images"
    )

    full = prepare_for_inference(ZoomInNet(ZoomInNetConfig.full()), device)
    big = [sample.image for sample in generate_fundus_set(16, seed=1, size=1024)]
    predict_fundus(full, big[:2], batch_size=2, attention_max_side=512)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    results = predict_fundus(full, big, batch_size=16, attention_max_side=512)
    elapsed = time.perf_counter() - started
    assert not any(isinstance(r, ItemError) for r in results)
    print(
        f"zoom_in_net/full predict_fundus on {device}: 16 photographs of 1024 px in {elapsed:.2f} s "
        f"({16 / elapsed:.1f} photos/s, preprocessing included)"
    )
    return 0


def format_row(row: dict[str, object]) -> str:
    parts = [f"{row['case']}", f"  {row['gflops_per_image']:.2f} GFLOPs/image"]
    if "cpu_single_ips" in row:
        parts.append(
            f"  CPU: one at a time {row['cpu_single_ips']:.2f} img/s, batch {row['cpu_batch']} "
            f"{row['cpu_batched_ips']:.2f} img/s ({row['cpu_batched_over_single']:.2f}x)"
        )
    if "gpu_batched_ips" in row:
        parts.append(
            f"  GPU (autocast): one at a time {row['gpu_single_ips']:.1f} img/s, "
            f"batch {row['gpu_batch']} {row['gpu_batched_ips']:.1f} img/s"
        )
    return "\n".join(parts)


if __name__ == "__main__":
    if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        print("note: run with OMP_WAIT_POLICY=PASSIVE for figures that hold on a shared machine", file=sys.stderr)
    sys.exit(main())
