"""The model registry: register checkpoints (refusing ones that do not fit), load them with their hash checked."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping
from typing import Any

import torch
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction
from torch import nn

from diagnosis.models import DEFAULT_OPERATING_THRESHOLD, ModelStatus, ModelVersion
from diagnosis.networks.checkpoints import CHECKPOINT_FORMAT, CheckpointMismatch, load_state_dict_checked
from diagnosis.networks.inference import prepare_for_inference
from diagnosis.networks.specs import NETWORKS, NetworkSpec
from platform_core.accounts.models import User
from platform_core.audit.services import audit_snapshot, audited_save
from platform_core.errors import ApplicationError
from platform_core.storage import delete_quietly, save_private, stored_name

REQUIRED_CARD_FIELDS = ("intended_use", "training_data", "not_for_clinical_use")


class ModelIntegrityError(Exception):
    """The stored weights are not the ones that were registered (hash differs)."""


def _read_checkpoint(data: bytes) -> dict[str, Any]:
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:  # any unreadable file gets the same clear message
        raise ApplicationError(
            "The checkpoint could not be read as PyTorch weights (torch.save of a state dict or a Visus checkpoint).",
            code="checkpoint_unreadable",
        ) from None
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        missing = [key for key in ("architecture", "config", "state_dict") if key not in payload]
        if missing:
            raise ApplicationError(
                f"The Visus checkpoint is incomplete: it has no {', '.join(missing)}.", code="checkpoint_unreadable"
            )
        if not isinstance(payload["architecture"], str) or not isinstance(payload["config"], Mapping):
            raise ApplicationError(
                "The Visus checkpoint's architecture must be a name and its config a mapping.",
                code="checkpoint_unreadable",
            )
        _require_state_dict(payload["state_dict"])
        return payload
    if isinstance(payload, Mapping):
        _require_state_dict(payload)
        return {"state_dict": dict(payload)}
    raise ApplicationError("The file holds no state dict.", code="checkpoint_unreadable")


def _require_state_dict(state_dict: Any) -> None:
    """A state dict maps parameter names to tensors; anything else is refused with the first bad entry."""
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise ApplicationError("The checkpoint's state dict is empty or not a mapping.", code="checkpoint_unreadable")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ApplicationError(
                f"The checkpoint's state dict holds {type(value).__name__} at {str(key)[:80]!r}; every entry must be "
                "a tensor.",
                code="checkpoint_unreadable",
            )


def validate_model_card(model_card: Any) -> None:
    """The card says what the model is for, what it learned from, and whether it may be used clinically."""
    if not isinstance(model_card, Mapping):
        raise ValidationError({"model_card": "The model card must be a JSON object."})
    problems = [f"{f} is missing" for f in REQUIRED_CARD_FIELDS if f not in model_card]
    for text_field in ("intended_use", "training_data"):
        if text_field in model_card and not (
            isinstance(model_card[text_field], str) and model_card[text_field].strip()
        ):
            problems.append(f"{text_field} must be a non-empty text")
    if "not_for_clinical_use" in model_card and not isinstance(model_card["not_for_clinical_use"], bool):
        problems.append("not_for_clinical_use must be true or false (not text)")
    if "metrics" in model_card and not isinstance(model_card["metrics"], Mapping):
        problems.append("metrics must be an object")
    if "operating_threshold" in model_card:
        threshold = model_card["operating_threshold"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
            problems.append("operating_threshold must be a probability between 0 and 1 (exclusive)")
    if problems:
        raise ValidationError({"model_card": f"The model card is not valid: {'; '.join(problems)}."})


# No network of the registry needs a size above this; a larger (or negative) number in a configuration would only
# make building the network fail or exhaust the worker's memory.
MAX_CONFIG_INTEGER = 65_536


def _config_size_problem(value: Any, path: str = "config") -> str:
    if isinstance(value, bool):
        return ""
    if isinstance(value, int) and not 0 <= value <= MAX_CONFIG_INTEGER:
        return f"{path} is {value}: sizes and counts must be between 0 and {MAX_CONFIG_INTEGER}"
    if isinstance(value, Mapping):
        return next((p for k, v in value.items() if (p := _config_size_problem(v, f"{path}.{k}"))), "")
    if isinstance(value, list | tuple):
        return next((p for i, v in enumerate(value) if (p := _config_size_problem(v, f"{path}[{i}]"))), "")
    return ""


def _validated_network(spec: NetworkSpec, config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> nn.Module:
    problem = _config_size_problem(config)
    if problem:
        raise ApplicationError(
            f"The configuration does not describe a {spec.architecture} network: {problem}.", code="bad_config"
        )
    try:
        network = spec.build(config)
    except ValueError as exc:
        raise ApplicationError(
            f"The configuration does not describe a {spec.architecture} network: {exc}", code="bad_config"
        ) from None
    except (TypeError, RuntimeError, OverflowError, MemoryError, RecursionError):
        raise ApplicationError(
            f"The configuration does not describe a {spec.architecture} network: a value has the wrong type or "
            "size for it. Use the configuration the network was trained with.",
            code="bad_config",
        ) from None
    try:
        load_state_dict_checked(network, state_dict, context=spec.architecture)
    except CheckpointMismatch as exc:
        raise ApplicationError(f"Refused: the {exc}.", code="checkpoint_mismatch") from None
    return network


@transaction.atomic
def model_register(
    *,
    actor: User | None,
    name: str,
    version: str,
    weights: bytes,
    model_card: Mapping[str, Any],
    architecture: str | None = None,
    config: Mapping[str, Any] | None = None,
    input_spec: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    expected_sha256: str = "",
) -> ModelVersion:
    """Register a checkpoint after proving it loads into its architecture. Stores the weights privately.

    A Visus checkpoint carries its architecture and config; a plain state dict needs both given. When both
    are given for a Visus checkpoint they must agree with it. `expected_sha256` (as published with the
    weights) refuses a file that differs from it. The card's ``operating_threshold`` (a probability) becomes
    the version's operating point; without one it is ``DEFAULT_OPERATING_THRESHOLD`` (0.5).
    """
    payload = _read_checkpoint(weights)
    if "architecture" in payload:
        if architecture and architecture != payload["architecture"]:
            raise ApplicationError(
                f"Refused: the checkpoint holds a {payload['architecture']} network, not {architecture}.",
                code="checkpoint_mismatch",
            )
        if config is not None and dict(config) != dict(payload["config"]):
            raise ApplicationError(
                "Refused: the configuration given differs from the checkpoint's.", code="checkpoint_mismatch"
            )
        architecture, config = payload["architecture"], payload["config"]
    spec = NETWORKS.get(architecture or "")
    if spec is None:
        raise ApplicationError(
            f"Unknown architecture {architecture!r}; known: {', '.join(NETWORKS)}.", code="bad_config"
        )
    if config is None:
        raise ApplicationError("A plain state dict needs its architecture configuration.", code="bad_config")
    _validated_network(spec, config, payload["state_dict"])
    validate_model_card(model_card)
    digest = hashlib.sha256(weights).hexdigest()
    if expected_sha256 and expected_sha256.strip().lower() != digest:
        raise ApplicationError(
            f"Refused: the weights' SHA-256 is {digest}, not the {expected_sha256.strip()} that was expected "
            "(a corrupted or different file).",
            code="hash_mismatch",
        )
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise ApplicationError(f"{name} {version} is already registered.", code="duplicate_model", status=409)

    stored = save_private("models", weights, "pt")
    try:
        model = ModelVersion(
            name=name,
            version=version,
            architecture=spec.architecture,
            task=spec.task,
            config=dict(config),
            input_spec=dict(input_spec or spec.describe_input(config)),
            weights=stored,
            sha256=digest,
            size=len(weights),
            model_card=dict(model_card),
            metrics=dict(metrics or model_card.get("metrics", {})),
            operating_threshold=float(model_card.get("operating_threshold", DEFAULT_OPERATING_THRESHOLD)),
            registered_by=actor,
        )
        audited_save(model, actor=actor, action="model.register", force_insert=True)
    except BaseException:
        delete_quietly([stored])  # nothing half-registered: no orphaned weights in storage
        raise
    return model


@transaction.atomic
def model_set_status(*, actor: User | None, model: ModelVersion, status: str, reason: str) -> ModelVersion:
    if status not in ModelStatus.values:
        raise ValidationError({"status": f"Unknown status {status!r}."})
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for activating or retiring a model."})
    model = ModelVersion.objects.select_for_update(no_key=True).get(pk=model.pk)
    if model.status == status:
        return model
    before = audit_snapshot(model)
    model.status = status
    audited_save(
        model, actor=actor, action="model.status", before=before, update_fields=["status", "updated_at"], reason=reason
    )
    return model


# Card entries that mirror a column of the version (metrics, operating point): set only at registration, so that
# the card and the column cannot disagree.
CARD_ENTRIES_FIXED_AT_REGISTRATION = ("metrics", "operating_threshold")


@transaction.atomic
def model_card_update(
    *, actor: User | None, model: ModelVersion, changes: Mapping[str, Any], reason: str
) -> ModelVersion:
    """Set top-level entries of a registered version's card (a figure measured after registration, such as the
    demo networks' cross-validation), never its weights. The card stays valid; the audit event records each
    entry's old and new value (`model_card.<entry>`) with the reason."""
    if not reason.strip():
        raise ValidationError({"reason": "Give a reason for changing a model card."})
    fixed = sorted(set(changes) & set(CARD_ENTRIES_FIXED_AT_REGISTRATION) | set(changes) & set(REQUIRED_CARD_FIELDS))
    if fixed:
        raise ValidationError(
            {"model_card": f"{', '.join(fixed)} of a registered version cannot change: register a new version."}
        )
    # NO KEY UPDATE (nothing here changes the version's key): a case completed meanwhile holds the audit chain's lock
    # and checks, at its commit, the foreign key of the job it queued for this version (FOR KEY SHARE). With FOR
    # UPDATE here, that check waited for this lock while this update waited for the chain's lock: a deadlock.
    model = ModelVersion.objects.select_for_update(no_key=True).get(pk=model.pk)
    old = dict(model.model_card or {})
    card = {**old, **changes}
    validate_model_card(card)
    changed = {f"model_card.{key}": [old.get(key), value] for key, value in changes.items() if old.get(key) != value}
    if not changed:
        return model
    before = audit_snapshot(model)
    model.model_card = card
    audited_save(
        model,
        actor=actor,
        action="model.card_update",
        before=before,
        update_fields=["model_card", "updated_at"],
        reason=reason.strip(),
        extra_changes=changed,
    )
    return model


_cache: dict[tuple[str, str], nn.Module] = {}
_cache_lock = threading.Lock()


def model_load(model: ModelVersion, *, device: torch.device | None = None) -> nn.Module:
    """The network with its weights, after checking the stored file's SHA-256 against the registry.

    Cached per process by (model id, hash): a worker loads each version once.
    """
    key = (str(model.pk), model.sha256)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    with default_storage.open(stored_name(model.weights), "rb") as handle:
        data = handle.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ModelIntegrityError(
            f"Refused to load {model}: the stored weights' SHA-256 {digest[:12]}... differs from the registered "
            f"{model.sha256[:12]}... (the file was changed or replaced)."
        )
    payload = _read_checkpoint(data)
    network = _validated_network(model.spec, model.config, payload["state_dict"])
    network = prepare_for_inference(network, device)  # eval mode, channels-last (oneDNN and cuDNN layout)
    with _cache_lock:
        _cache[key] = network
    return network


def clear_model_cache() -> None:
    with _cache_lock:
        _cache.clear()
