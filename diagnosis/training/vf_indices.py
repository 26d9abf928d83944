"""The indices-only glaucoma model of a visual field (logistic regression on VFI, MD and PSD), pure.

It is the baseline the visual-field network must beat (a net that reads the plot has to add to what the
three global indices already say), and the network's starting point: `warm_start_index_head` sets the
head's index weights and bias to it, so that training begins from the indices-only model and the plot
features only add to it. Without it the three indices enter a 203-input head next to 200 ReLU features at
the default initialisation; in 10 epochs their weights barely move, and a field whose plot does not
activate the (sparse) plot features got the head's bias whatever its MD: the demo net gave about 0.33
to every near-normal field, healthy or glaucomatous.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

from diagnosis.networks.vf_glaucoma import VFGlaucomaNet


def fit_indices_logistic(normalised_indices: np.ndarray, labels: np.ndarray, *, c: float = 1.0) -> LogisticRegression:
    """L2-regularised logistic regression of 0/1 labels on N x 3 normalised (VFI, MD, PSD)."""
    labels = np.asarray(labels).astype(int)
    if len(set(labels.tolist())) < 2:
        raise ValueError("the indices-only model needs both classes")
    return LogisticRegression(C=c, max_iter=1000).fit(np.asarray(normalised_indices, dtype=np.float64), labels)


def indices_only_scores(
    model: VFGlaucomaNet, train: tuple[torch.Tensor, torch.Tensor], test: torch.Tensor
) -> np.ndarray:
    """Held-out probabilities of the indices-only model fitted on (raw indices, labels) of `train`."""
    with torch.no_grad():
        x_train = model.normalise_indices(train[0]).cpu().numpy()
        x_test = model.normalise_indices(test).cpu().numpy()
    probabilities: np.ndarray = fit_indices_logistic(x_train, train[1].cpu().numpy()).predict_proba(x_test)[:, 1]
    return probabilities


def warm_start_index_head(model: VFGlaucomaNet, indices: torch.Tensor, labels: torch.Tensor) -> None:
    """Set the head's three index weights and its bias to the indices-only model fitted on this data."""
    if len(set(labels.tolist())) < 2:
        return  # one class: nothing to fit; the head keeps its initialisation
    with torch.no_grad():
        x = model.normalise_indices(indices.to(model.index_centres.device)).cpu().numpy()
        fitted = fit_indices_logistic(x, labels.cpu().numpy())
        head = model.head
        head.weight[0, -3:] = torch.as_tensor(fitted.coef_[0], dtype=head.weight.dtype, device=head.weight.device)
        head.bias[0] = float(fitted.intercept_[0])
