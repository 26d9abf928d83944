"""Registering small, randomly initialised networks for tests of the registry and the workers."""

from __future__ import annotations

import io

import torch

from diagnosis.networks.checkpoints import save_checkpoint
from diagnosis.networks.fundus_glaucoma import FundusGlaucomaConfig, FundusGlaucomaNet
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig, VFGlaucomaNet
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig
from diagnosis.registry import model_register

CARD = {
    "intended_use": "tests only",
    "training_data": "none (random initialisation)",
    "metrics": {},
    "not_for_clinical_use": True,
}


def checkpoint_bytes(network: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    save_checkpoint(network, buffer, metadata={"seed": 0})
    return buffer.getvalue()


def small_dr_network(seed: int = 0) -> ZoomInNet:
    torch.manual_seed(seed)
    return ZoomInNet(ZoomInNetConfig.small()).eval()


def small_vf_network(seed: int = 0) -> VFGlaucomaNet:
    torch.manual_seed(seed)
    return VFGlaucomaNet(VFGlaucomaConfig.small()).eval()


def register_small_models(version: str = "1"):
    dr = model_register(
        actor=None, name="dr-test", version=version, weights=checkpoint_bytes(small_dr_network()), model_card=CARD
    )
    vf = model_register(
        actor=None, name="vf-test", version=version, weights=checkpoint_bytes(small_vf_network()), model_card=CARD
    )
    return dr, vf


def small_fundus_glaucoma_network(seed: int = 0) -> FundusGlaucomaNet:
    torch.manual_seed(seed)
    return FundusGlaucomaNet(FundusGlaucomaConfig.small()).eval()


def register_fundus_glaucoma_model(version: str = "1"):
    return model_register(
        actor=None,
        name="fundus-glaucoma-test",
        version=version,
        weights=checkpoint_bytes(small_fundus_glaucoma_network()),
        model_card=CARD,
    )
