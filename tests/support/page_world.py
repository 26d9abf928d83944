"""A world where every page of the app has something to show (a trial in reading with files, an AI prediction and
a reader's open read) and the values to fill every URL pattern with (tests.support.urls.fill). Used by the walks
over pages (tests.support.pages)."""

from __future__ import annotations

from typing import Any

from reading import services as reading_services
from tests.support.reading import ReadingWorld


class PageWorld(ReadingWorld):
    def __init__(self) -> None:
        from diagnosis.models import InferenceJob, Prediction
        from tests.support.registry import register_small_models

        super().__init__(aided=True, images=True)
        file = self.files[self.case1.pk]
        model, _ = register_small_models()
        job = InferenceJob.objects.create(case=self.case1, model_version=model, status="succeeded")
        self.prediction = Prediction.objects.create(
            job=job,
            case=self.case1,
            model_version=model,
            runtime_ms=12.5,
            attention_overlay=file.thumbnail.name,
            class_probabilities=[0.62, 0.2, 0.1, 0.05, 0.03],
            referable_probability=0.18,
        )
        self.read = reading_services.read_next(reader=self.reader, trial=self.trial, phase="unaided")
        site = self.trial.sites.get(hospital=self.h1)
        ids = [str(x) for x in (self.case1.pk, self.read.pk, site.pk, file.pk, self.prediction.pk, self.subject1.pk)]
        self.values: dict[str, list[Any]] = {
            "slug": [self.trial.slug],
            "pseudonym": [self.subject1.pseudonym],
            "pk": ids,
            "file_pk": [str(file.pk)],
            "prediction_pk": [str(self.prediction.pk)],
            "variant": ["preview"],
            "phase": ["unaided"],
            "name": ["cases"],
            "*": ids,
        }
        # The order in which roles are tried for a page: the site's own view of subjects and cases first.
        self.people = [self.coord1, self.manager, self.reader, self.monitor, self.statistician, self.adjudicator]
