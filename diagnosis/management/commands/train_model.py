"""Train a diagnostic network and register it with its model card.

    python manage.py train_model --architecture zoom_in_net --name dr-grader --model-version 2 --demo
    python manage.py train_model --architecture zoom_in_net ... --folder photos/ --labels labels.csv  (file,grade)
    python manage.py train_model --architecture vf_glaucoma ... --folder fields/ --labels labels.csv  (file,label)
    python manage.py train_model --architecture fundus_glaucoma ... --folder photos/ --labels labels.csv  (file,label)
    python manage.py train_model --architecture zoom_in_net ... --trial demo-dr   (cases with a reference standard)

Seeded and reproducible on the CPU (--seed). Prints a progress bar and the validation metrics.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from diagnosis.networks.inference import configure_threads
from diagnosis.networks.vf_glaucoma import VFGlaucomaConfig
from diagnosis.registry import model_register
from diagnosis.training import datasets
from diagnosis.training.loop import TrainingProgress
from diagnosis.training.recipes import PHOTOGRAPHS, RECIPES, TrainingRecipe, demo_recipe
from platform_core.errors import ApplicationError
from platform_core.storage import stored_name
from trials.models import ReferenceStandard, Trial, VisualFieldResult
from trials.selectors import active_case_files, active_files

DEFAULT_DEMO_SYNTHETIC = 600  # the DR grader's generated photographs with --demo; recipes scale it


class ProgressBar:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last_epoch: tuple[str, int] | None = None

    def __call__(self, p: TrainingProgress) -> None:
        done = (p.epoch - 1 + p.step / p.steps) / p.epochs
        bar = "#" * round(30 * done) + "." * (30 - round(30 * done))
        line = f"[{bar}] stage {p.stage} epoch {p.epoch}/{p.epochs} loss {p.loss:.3f} ({p.elapsed_s:.0f} s)"
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        if p.step == p.steps and (p.stage, p.epoch) != self.last_epoch:
            self.last_epoch = (p.stage, p.epoch)
            self.stream.write(("\r" if self.tty else "") + line + "\n")


def trial_fundus_set(trial: Trial, size: int, *, glaucoma: bool = False) -> datasets.FundusSet:
    """Each case with a reference (the DR grade, or glaucoma yes/no) and a photograph: its latest photograph
    (two queries in all)."""
    references = ReferenceStandard.objects.filter(case__subject__trial=trial)
    if glaucoma:
        grades = {
            case_id: int(value == "yes")
            for case_id, value in references.filter(glaucoma__in=["yes", "no"]).values_list("case_id", "glaucoma")
        }
    else:
        grades = {
            case_id: grade for case_id, grade in references.values_list("case_id", "icdr_grade") if grade is not None
        }
    latest: dict = {}
    subject_of: dict = {}
    for case_id, name, subject_id in (
        active_files()
        .filter(case_id__in=grades, modality="fundus", file_format__in=["jpeg", "png", "tiff"])
        .order_by("created_at")
        .values_list("case_id", "content", "case__subject_id")
    ):
        latest[case_id] = name
        subject_of[case_id] = str(subject_id)
    items = []
    for case_id, name in latest.items():
        with default_storage.open(name, "rb") as handle:
            image = Image.open(io.BytesIO(handle.read()))
            image.load()
        items.append((str(case_id), image, grades[case_id]))
    if not items:
        what = "glaucoma reference" if glaucoma else "DR reference grade"
        raise CommandError(f"Trial {trial.slug} has no case with both a {what} and a photograph.")
    data = datasets.fundus_set(items, size, datasets.GLAUCOMA_LABELS if glaucoma else datasets.GRADE_LABELS)
    data.groups = [subject_of[case_id] for case_id in latest]  # validation holds out whole subjects
    return data


def trial_visual_fields(trial: Trial, size: int) -> datasets.VisualFieldSet:
    """The trial's reliable fields with a yes/no glaucoma reference, as the workers read them: the stored PD
    plot and the stored VFI/MD/PSD (the perimeter's own values where it reported them)."""
    items = []
    references = ReferenceStandard.objects.filter(case__subject__trial=trial, glaucoma__in=["yes", "no"])
    for reference in references.select_related("case"):
        result = (
            VisualFieldResult.objects.filter(case_file__in=active_case_files(reference.case), reliable=True)
            .order_by("-created_at")
            .first()
        )
        if result is None:
            continue
        with default_storage.open(stored_name(result.pd_plot), "rb") as handle:
            png = handle.read()
        indices = (result.visual_field_index, result.mean_deviation, result.pattern_standard_deviation)
        items.append((png, indices, int(reference.glaucoma == "yes"), str(reference.case.subject_id)))
    if not items:
        raise CommandError(f"Trial {trial.slug} has no case with both a glaucoma reference and a reliable field.")
    return datasets.stored_visual_field_set(items, size)


class Command(BaseCommand):
    help = "Train a network (seeded), report validation metrics, and register it with its model card."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--architecture", required=True, choices=list(RECIPES))
        parser.add_argument("--name", required=True)
        parser.add_argument("--model-version", required=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--demo", action="store_true", help="shipped real data plus generated photographs")
        source.add_argument("--trial", help="a trial's cases with their reference standard")
        source.add_argument("--folder", help="a folder of files, with --labels")
        generated = ", ".join(name for name, recipe in RECIPES.items() if recipe.generated)
        source.add_argument("--synthetic", type=int, help=f"only N generated photographs ({generated})")
        parser.add_argument("--labels", help="labels CSV for --folder (file,grade or file,label)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--preset", choices=["small", "full"], default="small")
        parser.add_argument("--validation-fraction", type=float, default=0.2)
        parser.add_argument("--epochs-scale", type=float, default=1.0, help="shorten training (e.g. 0.25)")
        parser.add_argument(
            "--demo-synthetic",
            type=int,
            help="generated photographs with --demo (default: "
            + ", ".join(f"{r.demo_synthetic(DEFAULT_DEMO_SYNTHETIC)} {name}" for name, r in RECIPES.items())
            + ")",
        )
        parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
        parser.add_argument(
            "--cross-validate",
            type=int,
            default=0,
            metavar="K",
            help="with --demo: also K-fold cross-validation over all the shipped real data, by subject (K more runs)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configure_threads(options["threads"])
        bar = ProgressBar(self.stdout._out if hasattr(self.stdout, "_out") else sys.stdout)
        architecture = str(options["architecture"])
        seed = int(options["seed"])
        preset = str(options["preset"])
        fraction = float(options["validation_fraction"])
        if options["folder"] and not options["labels"]:
            raise CommandError("--folder needs --labels.")
        if options["cross_validate"] and not options["demo"]:
            raise CommandError("--cross-validate is for --demo (the shipped real data).")
        try:
            recipe = RECIPES[architecture]
            scale = float(options["epochs_scale"])
            if options["demo"]:
                demo_synthetic = options["demo_synthetic"]
                trained = demo_recipe(architecture)(
                    synthetic=int(demo_synthetic)
                    if demo_synthetic is not None
                    else recipe.demo_synthetic(DEFAULT_DEMO_SYNTHETIC),
                    seed=seed,
                    preset=preset,
                    validation_fraction=fraction,
                    epochs_scale=scale,
                    progress=bar,
                    cross_validation_folds=int(options["cross_validate"] or 0),
                )
            elif recipe.reads == PHOTOGRAPHS:
                trained = self._photographs(options, seed, preset, fraction, bar, recipe=recipe)
            else:
                trained = self._visual_fields(options, seed, preset, fraction, bar, recipe=recipe)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Trained in {trained.seconds:.0f} s. Validation: {trained.metrics}")
        for key in ("real_data_performance", "metrics_validation_split", "metrics_real_cross_validated"):
            if key in trained.model_card:
                self.stdout.write(f"{key}: {trained.model_card[key]}")
        try:
            model = model_register(
                actor=None,
                name=str(options["name"]),
                version=str(options["model_version"]),
                weights=trained.weights,
                model_card=trained.model_card,
                metrics=trained.metrics,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"Registered {model} (sha256 {model.sha256[:16]}...)"))

    def _photographs(self, options, seed, preset, fraction, bar, *, recipe: TrainingRecipe):
        """A network that reads photographs (the DR grader, the fundus glaucoma net), from the chosen source."""
        scale = float(options["epochs_scale"])
        size = recipe.view_size(preset)
        data, synthetic = None, 0
        if options["synthetic"]:
            synthetic = int(options["synthetic"])
            description = f"{synthetic} {recipe.generated}"
        elif options["trial"]:
            trial = Trial.objects.filter(slug=options["trial"]).first()
            if trial is None:
                raise CommandError(f"No trial {options['trial']!r}.")
            data = trial_fundus_set(trial, size, glaucoma=recipe.labels == datasets.GLAUCOMA_LABELS)
            description = f"{len(data)} photographs of trial {trial.protocol_number} with their {recipe.reference}"
        else:
            data = datasets.fundus_folder(Path(options["folder"]), Path(options["labels"]), size, recipe.labels)
            description = f"{len(data)} labelled photographs from {options['folder']}"
        return recipe.train(
            data=data,
            synthetic=synthetic,
            seed=seed,
            preset=preset,
            validation_fraction=fraction,
            plan=recipe.plan(scale),
            progress=bar,
            description=description,
        )

    def _visual_fields(self, options, seed, preset, fraction, bar, *, recipe: TrainingRecipe):
        """A network that reads visual fields, from a trial's reliable fields or a labelled folder."""
        scale = float(options["epochs_scale"])
        if options["synthetic"]:
            raise CommandError(
                f"--synthetic is not for {recipe.architecture} (it has no generated data); use --demo for the "
                "shipped visual fields."
            )
        if options["trial"]:
            trial = Trial.objects.filter(slug=options["trial"]).first()
            if trial is None:
                raise CommandError(f"No trial {options['trial']!r}.")
            data = trial_visual_fields(trial, VFGlaucomaConfig.preset(preset).input_size)
            description = f"{len(data)} reliable fields of trial {trial.protocol_number} with glaucoma references"
            fields = []
        else:
            data = None
            fields = datasets.visual_field_folder(Path(options["folder"]), Path(options["labels"]))
            description = f"{len(fields)} labelled fields from {options['folder']}"
        return recipe.train(
            fields=fields,
            data=data,
            seed=seed,
            preset=preset,
            validation_fraction=fraction,
            plan=recipe.plan(scale),
            progress=bar,
            description=description,
        )
