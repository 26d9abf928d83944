"""Register a checkpoint in the model registry.

    python manage.py register_model --name dr-grader --model-version 1.0 --weights ckpt.pt --model-card card.json
        [--architecture zoom_in_net --config config.json]   # needed for a plain state dict
        [--sha256 HEX]   # the hash published with the weights: a different file is refused
        [--retire-previous]

The checkpoint must load into its architecture (names and shapes); the weights' SHA-256 is recorded and
checked on every load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from diagnosis.models import ModelStatus, ModelVersion
from diagnosis.networks.specs import NETWORKS
from diagnosis.registry import model_register, model_set_status
from platform_core.accounts.models import User
from platform_core.errors import ApplicationError


def _json_file(path: str | None, what: str) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"Could not read the {what} {path}: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError(f"The {what} must be a JSON object.")
    return value


class Command(BaseCommand):
    help = "Register a network checkpoint (refused if it does not fit its architecture)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--model-version", required=True, help="version label, e.g. 1.0")
        parser.add_argument("--weights", required=True, help="checkpoint file (torch.save)")
        parser.add_argument("--model-card", required=True, help="JSON: intended_use, training_data, metrics, ...")
        parser.add_argument(
            "--architecture",
            choices=list(NETWORKS),
            help="the network of a plain state dict (a Visus checkpoint names it)",
        )
        parser.add_argument("--config", help="JSON architecture configuration (for a plain state dict)")
        parser.add_argument("--sha256", default="", help="SHA-256 published with the weights; refused if it differs")
        parser.add_argument("--user", help="email of the person registering (recorded in the audit trail)")
        parser.add_argument("--retire-previous", action="store_true", help="retire other versions of this name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            weights = Path(str(options["weights"])).read_bytes()
        except OSError as exc:
            raise CommandError(f"Could not read the weights: {exc}") from None
        card = _json_file(str(options["model_card"]), "model card")
        config = _json_file(options["config"], "configuration")
        actor = User.objects.filter(email__iexact=options["user"]).first() if options["user"] else None
        try:
            model = model_register(
                actor=actor,
                name=str(options["name"]),
                version=str(options["model_version"]),
                weights=weights,
                model_card=card or {},
                architecture=options["architecture"],
                config=config,
                expected_sha256=str(options["sha256"]),
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if options["retire_previous"]:
            for older in ModelVersion.objects.filter(name=model.name, status=ModelStatus.ACTIVE).exclude(pk=model.pk):
                model_set_status(actor=actor, model=older, status=ModelStatus.RETIRED, reason=f"replaced by {model}")
        self.stdout.write(
            self.style.SUCCESS(f"Registered {model} ({model.architecture}, sha256 {model.sha256[:16]}..., active)")
        )
