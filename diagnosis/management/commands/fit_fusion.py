"""Fit a trial's glaucoma fusion on its reference standard (Platt scaling per modality, then the weights and
prior; see diagnosis/networks/fusion.py). The case pages of the trial then show the calibrated probability.

    python manage.py fit_fusion --trial SLUG [--fundus-model NAME:VERSION] [--vf-model NAME:VERSION]
        [--user EMAIL]
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from diagnosis.calibration import fusion_calibration_fit
from diagnosis.models import ModelVersion
from platform_core.accounts.models import User
from platform_core.errors import ApplicationError
from trials.models import Trial


def _model(label: str | None) -> ModelVersion | None:
    if not label:
        return None
    name, _, version = label.partition(":")
    model = ModelVersion.objects.filter(name=name, version=version).first()
    if model is None:
        raise CommandError(f"No model version {label!r} (give NAME:VERSION as registered).")
    return model


class Command(BaseCommand):
    help = "Fit a trial's glaucoma fusion on its reference standard; the case pages then use it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--trial", required=True, help="trial slug")
        parser.add_argument("--fundus-model", help="NAME:VERSION (default: the most used on the trial's cases)")
        parser.add_argument("--vf-model", help="NAME:VERSION (default: the most used on the trial's cases)")
        parser.add_argument("--user", help="email of the person fitting (recorded in the audit trail)")

    def handle(self, *args: object, **options: object) -> None:
        trial = Trial.objects.filter(slug=options["trial"]).first()
        if trial is None:
            raise CommandError(f"No trial {options['trial']!r}.")
        actor = None
        if options["user"]:
            actor = User.objects.filter(email__iexact=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user {options['user']!r}.")
        try:
            calibration = fusion_calibration_fit(
                actor=actor,
                trial=trial,
                fundus_model=_model(options["fundus_model"]),  # type: ignore[arg-type]
                vf_model=_model(options["vf_model"]),  # type: ignore[arg-type]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        weights = calibration.weights
        self.stdout.write(
            f"Fitted on {calibration.eyes} eyes ({calibration.positives} glaucomatous); prior "
            f"{weights['prior_probability']:.3f}; fundus model {calibration.fundus_model or '-'}, visual-field "
            f"model {calibration.vf_model or '-'}"
        )
        for modality, row in calibration.report.items():
            state = (
                f"Platt slope {row['slope']:.2f}, intercept {row['intercept']:.2f}"
                if "slope" in row
                else f"not calibrated: {row['not_fitted']}"
            )
            self.stdout.write(f"  {modality}: {row['eyes']} eyes, {row['positives']} glaucomatous; {state}")
        self.stdout.write(self.style.SUCCESS("Fusion calibration stored."))
