"""Checkpoints: a checkpoint is {"format", "architecture", "config", "state_dict", "metadata"}.

Loading rebuilds the network its architecture's spec names (`specs.NETWORKS`) from the stored config and
refuses a state dict that does not fit it with a `CheckpointMismatch` listing the missing, unexpected and
wrongly shaped parameters. Pure torch.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor, nn

from diagnosis.networks.specs import network_spec, spec_of

CHECKPOINT_FORMAT = 1


class CheckpointMismatch(ValueError):
    """A state dict that does not fit the architecture it is loaded into."""

    def __init__(
        self,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
        context: str = "",
    ) -> None:
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)} key(s): {_listing(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)} key(s): {_listing(self.unexpected)}")
        if self.mismatched:
            shapes = [f"{key} (model {tuple(want)}, checkpoint {tuple(got)})" for key, want, got in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {_listing(shapes)}")
        prefix = f"checkpoint does not fit the architecture{f' ({context})' if context else ''}"
        super().__init__(f"{prefix}: " + "; ".join(parts))


def _listing(values: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", ... and {len(values) - limit} more" if len(values) > limit else "")


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, Tensor], context: str = "") -> nn.Module:
    """Load strictly, after checking names and shapes, so a mismatch is reported all at once."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        (key, tuple(expected[key].shape), tuple(state_dict[key].shape))
        for key in sorted(set(expected) & set(state_dict))
        if tuple(expected[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatch(missing, unexpected, mismatched, context)
    model.load_state_dict(state_dict, strict=True)
    return model


def build_network(architecture: str, config: Mapping[str, Any]) -> nn.Module:
    """The untrained network of an architecture, from its stored config (unknown fields are refused)."""
    return network_spec(architecture).build(config)


def architecture_of(model: nn.Module) -> str:
    return spec_of(model).architecture


def save_checkpoint(
    model: nn.Module, destination: str | Path | BinaryIO, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write architecture, config, weights and JSON-like metadata (training data, metrics, seed)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": architecture_of(model),
        "config": spec_of(model).config_of(model),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    torch.save(payload, destination)


def load_checkpoint(
    source: str | Path | BinaryIO | bytes,
    *,
    expected_architecture: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network a checkpoint describes and load its weights; returns (model in eval mode, metadata).

    `weights_only=True`: a checkpoint is data, never code, whoever uploaded it.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    payload = torch.load(source, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not a Visus network checkpoint (missing or unknown 'format')")
    architecture = payload["architecture"]
    if expected_architecture is not None and architecture != expected_architecture:
        raise ValueError(f"checkpoint holds a {architecture!r} network, expected {expected_architecture!r}")
    model = build_network(architecture, payload["config"])
    load_state_dict_checked(model, payload["state_dict"], context=architecture)
    return model.eval(), dict(payload.get("metadata") or {})
