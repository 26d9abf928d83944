"""The training core, by concern (pure torch/numpy/scipy; no Django):

- `loop`: the one seeded training loop every network uses (stages, mixed precision, progress, time budget);
- `metrics`: quadratic-weighted kappa, ROC AUC, binary metrics;
- per network: `zoom_in_net` (the DR grader's staged training), `vf_glaucoma`, `fundus_glaucoma`.

This module re-exports their public names, so `from diagnosis.training.core import ...` keeps working.
"""

from diagnosis.training.fundus_glaucoma import (
    FundusGlaucomaTrainingPlan,
    evaluate_fundus_glaucoma,
    fundus_glaucoma_crops,
    train_fundus_glaucoma,
)
from diagnosis.training.loop import (
    Optimiser,
    ProgressCallback,
    Stage,
    TrainingProgress,
    TrainingResult,
    augment,
    seed_everything,
    train_stages,
)
from diagnosis.training.metrics import binary_metrics, quadratic_weighted_kappa, roc_auc
from diagnosis.training.vf_glaucoma import VFTrainingPlan, evaluate_vf_glaucoma, train_vf_glaucoma
from diagnosis.training.zoom_in_net import (
    DRPredictions,
    DRTrainingPlan,
    evaluate_zoom_in_net,
    fundus_tensors,
    predict_zoom_in_net,
    train_zoom_in_net,
)

__all__ = [
    "DRPredictions",
    "DRTrainingPlan",
    "FundusGlaucomaTrainingPlan",
    "Optimiser",
    "ProgressCallback",
    "Stage",
    "TrainingProgress",
    "TrainingResult",
    "VFTrainingPlan",
    "augment",
    "binary_metrics",
    "evaluate_fundus_glaucoma",
    "evaluate_vf_glaucoma",
    "evaluate_zoom_in_net",
    "fundus_glaucoma_crops",
    "fundus_tensors",
    "predict_zoom_in_net",
    "quadratic_weighted_kappa",
    "roc_auc",
    "seed_everything",
    "train_fundus_glaucoma",
    "train_stages",
    "train_vf_glaucoma",
    "train_zoom_in_net",
]
