"""The demo networks' cross-validation runs on the worker after the server has started: the cards say queued or
running until it lands, never show a figure that was not measured, and get the figures through the registry's
audited path."""

from __future__ import annotations

import io
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from demo import crossval
from demo.cross_validation import (
    MAX_FOLD_ATTEMPTS,
    cross_validation_dispatch,
    cross_validation_run,
    fold_time_limit,
    state_of,
    unfinished,
)
from demo.seeding import seed_models
from demo.tasks import demo_cross_validation_fold_task
from demo.training import CrossValidationRecipe, train_demo_vf
from diagnosis.models import ModelVersion
from diagnosis.registry import model_register
from platform_core.accounts.models import Hospital, Role
from platform_core.audit.models import AuditEvent
from tests.support.factories import member
from tests.support.networks import use_test_threads
from tests.support.registry import CARD, checkpoint_bytes, small_vf_network

DEMO_NAMES = {"dr-demo", "vf-glaucoma-demo", "fundus-glaucoma-demo"}


class SentTasks:
    """Stands in for the broker: records each message (task name, args) in the order it was published."""

    def __init__(self):
        self.messages: list[tuple[str, list]] = []

    def publisher(self, task):
        def apply_async(args=None, **options):
            self.messages.append((task.name, list(args or [])))

        return apply_async


class ModelCleanup:
    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def card_page(self, model):
        hospital, _ = Hospital.objects.get_or_create(code="H09", defaults={"name": "Card Hospital", "country": "GB"})
        manager = member(Role.TRIAL_MANAGER, hospital)
        self.client.force_login(manager)
        return self.client.get(reverse("diagnosis:model-card", args=[model.pk]))


class CrossValidationOnTheWorkerTests(ModelCleanup, TestCase):
    def run_on_the_worker(self, model):
        """Fold 0's message as seed_demo sends it, then each next fold's message as each task sends it, every
        one run as the worker runs it (Celery's `apply`)."""
        sent = SentTasks()
        cross_validation_dispatch_patch = mock.patch.object(
            demo_cross_validation_fold_task, "apply_async", sent.publisher(demo_cross_validation_fold_task)
        )
        with cross_validation_dispatch_patch:
            self.assertEqual(cross_validation_dispatch([model]), 1)
            done = 0
            while done < len(sent.messages):
                _, args = sent.messages[done]
                result = demo_cross_validation_fold_task.apply(args=args)
                self.assertTrue(result.successful(), result.traceback)
                done += 1
        return [args for _, args in sent.messages]

    def test_the_models_are_registered_first_and_the_worker_writes_the_cross_validated_figures_into_their_cards(self):
        use_test_threads()
        out = io.StringIO()
        names = seed_models(stdout=out, epochs_scale=0.05, synthetic=40, folds=2)
        self.assertEqual(set(names), DEMO_NAMES)
        models = {m.name: m for m in ModelVersion.objects.all()}
        self.assertEqual(set(models), DEMO_NAMES)
        self.assertNotIn("cross-validated", out.getvalue())
        for model in models.values():
            card = model.model_card
            self.assertEqual(card["cross_validation"]["status"], "queued")
            self.assertEqual(card["cross_validation"]["folds"], 2)
            self.assertNotIn("metrics_real_cross_validated", card)  # nothing shown that was not measured
            self.assertIn("auc", card["metrics"])  # the real held-out figures are there from the start
        self.assertEqual({m.name for m in unfinished(names)}, DEMO_NAMES)

        page = self.card_page(models["vf-glaucoma-demo"])
        self.assertContains(page, 'data-status="queued"')
        self.assertContains(page, "Cross-validation queued for the worker (2 folds)")
        self.assertNotContains(page, "pooled out-of-fold figures")

        for name, model in models.items():
            with self.subTest(name=name):
                messages = self.run_on_the_worker(model)
                self.assertEqual([args[1] for args in messages], [0, 1])  # one task per fold, in order
                model.refresh_from_db()
                card = model.model_card
                self.assertEqual(card["cross_validation"]["status"], "done")
                self.assertGreater(card["cross_validation"]["seconds"], 0)
                figures = card["metrics_real_cross_validated"]
                recipe = CrossValidationRecipe.from_dict(card["cross_validation"]["recipe"])
                everything = crossval.real_set(model.architecture, recipe.config(), held_out=None)
                self.assertEqual(figures["n"], len(everything.truth))  # every real item scored once, out of fold
                self.assertGreater(figures["n"], card["metrics"]["n"])
                self.assertEqual(figures["folds"], 2.0)
                self.assertEqual(figures["subjects"], everything.subjects)
                self.assertIn("auc", figures)
                # Through the registry's audited path: running, then done with the figures.
                events = AuditEvent.objects.filter(action="model.card_update", object_id=str(model.pk)).order_by("seq")
                # Each fold's start and end is written (the fold it is at, its attempts), then done with the figures.
                states = [e.changes["model_card.cross_validation"][1] for e in events]
                self.assertEqual([state["status"] for state in states], ["running", "running", "running", "done"])
                self.assertEqual([state["fold"] for state in states], [0, 1, 1, 1])
                self.assertEqual(states[-1]["attempts"], {"0": 1, "1": 1})
                self.assertEqual(events.last().changes["model_card.metrics_real_cross_validated"], [None, figures])
                self.assertIn("cross-validation", events.last().reason)
        self.assertEqual(unfinished(names), [])

        page = self.card_page(models["dr-demo"])
        self.assertContains(page, 'data-status="done"')
        self.assertContains(page, "2-fold cross-validation over all the shipped real data, split by subject")
        figures = ModelVersion.objects.get(name="dr-demo").model_card["metrics_real_cross_validated"]
        self.assertContains(page, f"<td>subjects</td><td>{figures['subjects']}</td>", html=False)

        # A done card is never recomputed: a stray message changes nothing.
        before = AuditEvent.objects.filter(action="model.card_update").count()
        demo_cross_validation_fold_task.apply(args=[str(models["dr-demo"].pk), 0, None, 0.0])
        self.assertEqual(AuditEvent.objects.filter(action="model.card_update").count(), before)

    def test_the_worker_measures_what_the_same_cross_validation_measures_in_one_process(self):
        use_test_threads()
        here = train_demo_vf(epochs_scale=0.1, cross_validation_folds=2)
        later = train_demo_vf(epochs_scale=0.1, cross_validation_folds=2, cross_validation_later=True)
        self.assertEqual(here.model_card["cross_validation"]["status"], "done")
        self.assertEqual(later.model_card["cross_validation"]["status"], "queued")
        self.assertNotIn("metrics_real_cross_validated", later.model_card)
        model = model_register(
            actor=None, name="vf-glaucoma-demo", version="demo-1", weights=later.weights, model_card=later.model_card
        )
        self.assertEqual(len(self.run_on_the_worker(model)), 2)
        model.refresh_from_db()
        self.assertEqual(
            model.model_card["metrics_real_cross_validated"], here.model_card["metrics_real_cross_validated"]
        )

    def test_a_failed_cross_validation_says_so_on_the_card_with_no_figure_and_is_sent_again(self):
        use_test_threads()
        trained = train_demo_vf(epochs_scale=0.05, cross_validation_folds=2, cross_validation_later=True)
        card = trained.model_card
        card["cross_validation"]["recipe"]["architecture"] = "zoom_in_net"  # not what the weights are
        model = model_register(
            actor=None, name="vf-glaucoma-demo", version="demo-1", weights=trained.weights, model_card=card
        )
        with self.assertRaisesMessage(ValueError, "the recipe trains zoom_in_net, the model is vf_glaucoma"):
            cross_validation_run(model)
        model.refresh_from_db()
        self.assertEqual(model.model_card["cross_validation"]["status"], "failed")
        self.assertIn("fold 1: ValueError", model.model_card["cross_validation"]["error"])
        self.assertNotIn("metrics_real_cross_validated", model.model_card)
        page = self.card_page(model)
        self.assertContains(page, 'data-status="failed"')
        self.assertContains(page, "Cross-validation failed (fold 1: ValueError")
        self.assertEqual(unfinished(["vf-glaucoma-demo"]), [model])  # seed_demo sends it again


class WorkerDied(BaseException):
    """What a worker killed mid-fold (out of memory, SIGKILL) leaves behind: no code after it runs, so nothing
    is written on the card; the broker then delivers the same message again (acks_late)."""


def queued_card(folds: int = 2) -> ModelVersion:
    """A small VF network registered with its cross-validation queued, as seed_demo leaves it."""
    recipe = CrossValidationRecipe("vf_glaucoma", epochs_scale=0.05).to_dict()
    card = {**CARD, "cross_validation": {"status": "queued", "folds": folds, "recipe": recipe}}
    return model_register(
        actor=None,
        name="vf-glaucoma-demo",
        version="demo-1",
        weights=checkpoint_bytes(small_vf_network()),
        model_card=card,
    )


class RedeliveredFoldTests(ModelCleanup, TestCase):
    """A fold message delivered again (its worker died, or it was sent twice) never starts an unbounded loop or
    a second chain: the card counts each fold's starts."""

    def test_a_fold_whose_worker_dies_each_time_is_started_at_most_twice_then_failed_and_the_chain_stops(self):
        model = queued_card()
        args = [str(model.pk), 0, None, 0.0]
        sent = SentTasks()
        with (
            mock.patch.object(crossval, "cross_validation_folds", side_effect=WorkerDied) as fold_data,
            mock.patch.object(
                demo_cross_validation_fold_task, "apply_async", sent.publisher(demo_cross_validation_fold_task)
            ),
        ):
            for attempt in range(1, MAX_FOLD_ATTEMPTS + 1):  # the same message, as the broker redelivers it
                with self.assertRaises(WorkerDied):
                    demo_cross_validation_fold_task(*args)
                model.refresh_from_db()
                self.assertEqual(state_of(model)["status"], "running")
                self.assertEqual(state_of(model)["attempts"], {"0": attempt})  # written before the fold trains
            outcome = demo_cross_validation_fold_task(*args)  # started once too often: not run again
            self.assertEqual(fold_data.call_count, MAX_FOLD_ATTEMPTS)
            self.assertIn("failed", outcome)
            self.assertNotIn("next", outcome)
            self.assertEqual(sent.messages, [])  # the chain stops: the gpu queue is free for inference
            model.refresh_from_db()
            state = state_of(model)
            self.assertEqual(state["status"], "failed")
            self.assertEqual(
                state["error"],
                "fold 1: started 2 times and never finished (the worker stopped during it, e.g. out of memory or "
                "killed); not run again",
            )
            self.assertNotIn("metrics_real_cross_validated", model.model_card)
            # Yet another delivery of that message changes nothing.
            before = AuditEvent.objects.filter(action="model.card_update").count()
            self.assertIn("skipped", demo_cross_validation_fold_task(*args))
            self.assertEqual(fold_data.call_count, MAX_FOLD_ATTEMPTS)
            self.assertEqual(AuditEvent.objects.filter(action="model.card_update").count(), before)
            page = self.card_page(model)
            self.assertContains(page, "Cross-validation failed (fold 1: started 2 times and never finished")

            # seed_demo sends a failed card again, queued afresh: its folds get their attempts again.
            self.assertEqual(unfinished(["vf-glaucoma-demo"]), [model])
            self.assertEqual(cross_validation_dispatch([model]), 1)
            model.refresh_from_db()
            self.assertEqual(state_of(model)["status"], "queued")
            self.assertNotIn("attempts", state_of(model))
            with self.assertRaises(WorkerDied):
                demo_cross_validation_fold_task(*sent.messages[0][1])
            self.assertEqual(fold_data.call_count, MAX_FOLD_ATTEMPTS + 1)

    def test_a_fold_delivered_again_after_it_finished_is_skipped_and_sends_no_second_chain(self):
        model = queued_card()
        args = [str(model.pk), 0, None, 0.0]
        everything, index = SimpleNamespace(truth=[0, 1, 0, 1]), [[0, 1], [2, 3]]
        sent = SentTasks()
        with (
            mock.patch.object(crossval, "cross_validation_folds", return_value=(everything, index)),
            mock.patch.object(crossval, "fold_scores", side_effect=[[0.2, 0.7], [0.1, 0.9]]) as scored,
            mock.patch.object(
                demo_cross_validation_fold_task, "apply_async", sent.publisher(demo_cross_validation_fold_task)
            ),
        ):
            self.assertEqual(demo_cross_validation_fold_task(*args), {"fold": 0, "next": 1})
            self.assertEqual(len(sent.messages), 1)
            # The worker died after sending fold 2 but before acknowledging fold 1: fold 1 comes again.
            outcome = demo_cross_validation_fold_task(*args)
            self.assertIn("skipped", outcome)
            self.assertIn("fold 1 is not next", outcome["skipped"])
            self.assertEqual(scored.call_count, 1)
            self.assertEqual(len(sent.messages), 1)  # no second fold 2: one chain
            model.refresh_from_db()
            self.assertEqual((state_of(model)["status"], state_of(model)["fold"]), ("running", 1))
            self.assertEqual(state_of(model)["attempts"], {"0": 1})

            # Had the worker died before sending fold 2, no message would be left: the chain waits until stale,
            # unless seed_demo runs before the only worker starts (make run) and resumes every running card.
            self.assertEqual(unfinished(["vf-glaucoma-demo"]), [])
            self.assertEqual(unfinished(["vf-glaucoma-demo"], resume_running=True), [model])
            self.assertEqual(cross_validation_dispatch([model]), 1)
            model.refresh_from_db()
            self.assertEqual(state_of(model)["status"], "queued")
            self.assertNotIn("attempts", state_of(model))
            self.assertEqual(sent.messages[-1][1], [str(model.pk), 0, None, 0.0])
            # The old chain's fold 2, if still in the broker, is skipped; the new chain runs from fold 1.
            self.assertIn(
                "not next", demo_cross_validation_fold_task(str(model.pk), 1, [0.2, 0.7, None, None], 1.0)["skipped"]
            )
            self.assertEqual(demo_cross_validation_fold_task(*args), {"fold": 0, "next": 1})
            self.assertEqual(scored.call_count, 2)


class SeedDemoSendsTheCrossValidationTests(ModelCleanup, TestCase):
    def test_seed_demo_queues_the_demo_cases_before_the_cross_validation_and_resends_unfinished_ones(self):
        """Registered demo networks whose cross-validation is queued: seed_demo trains nothing, seeds the
        trial (its completed cases queue inference jobs) and only then sends fold 0 of each."""
        from diagnosis.tasks import infer_case_task

        use_test_threads()
        trained = train_demo_vf(epochs_scale=0.05, cross_validation_folds=3, cross_validation_later=True)
        for name in DEMO_NAMES:  # a small network under each demo name: seed_demo keeps registered ones
            model_register(
                actor=None, name=name, version="demo-1", weights=trained.weights, model_card=trained.model_card
            )
        sent = SentTasks()
        with (
            mock.patch.object(infer_case_task, "apply_async", sent.publisher(infer_case_task)),
            mock.patch.object(
                demo_cross_validation_fold_task, "apply_async", sent.publisher(demo_cross_validation_fold_task)
            ),
        ):
            out = io.StringIO()
            with self.captureOnCommitCallbacks(execute=True):  # as each commit runs them in make run
                call_command("seed_demo", stdout=out)
            self.assertIn("sent to the worker", out.getvalue())
            order = [name.rsplit(".", 1)[-1] for name, _ in sent.messages]
            first_cross_validation = order.index("demo_cross_validation_fold_task")
            self.assertGreater(first_cross_validation, 0)
            self.assertEqual(set(order[:first_cross_validation]), {"infer_case_task"})
            self.assertEqual(order[first_cross_validation:], ["demo_cross_validation_fold_task"] * 3)
            pks = {str(m.pk) for m in ModelVersion.objects.filter(name__in=DEMO_NAMES)}
            self.assertEqual({args[0] for _, args in sent.messages[first_cross_validation:]}, pks)
            self.assertEqual({tuple(args[1:]) for _, args in sent.messages[first_cross_validation:]}, {(0, None, 0.0)})

            # Still queued (the worker never ran): the next seed_demo sends them again; once done, never.
            with self.captureOnCommitCallbacks(execute=True):
                call_command("seed_demo", stdout=io.StringIO())
            self.assertEqual(len([n for n, _ in sent.messages if n.endswith("fold_task")]), 6)

            # Running: sent again only when stale (no progress for longer than a fold can run, so no fold is
            # running); a fresh running one is left to its chain (a second chain on a persistent broker).
            fresh, old, failed = ModelVersion.objects.order_by("name")
            now = timezone.now()
            states = {
                fresh: {"status": "running", "fold": 1, "progress_at": (now - timedelta(minutes=5)).isoformat()},
                old: {"status": "running", "fold": 1, "progress_at": (now - fold_time_limit() * 1.1).isoformat()},
                failed: {"status": "failed", "fold": 0, "attempts": {"0": 3}, "error": "fold 1: started 2 times"},
            }
            for model, state in states.items():
                model.model_card = {**model.model_card, "cross_validation": {**state_of(model), **state}}
                model.save(update_fields=["model_card"])
            with self.captureOnCommitCallbacks(execute=True):
                call_command("seed_demo", stdout=io.StringIO())
            resent = [args for n, args in sent.messages if n.endswith("fold_task")][6:]
            self.assertEqual(sorted(args[0] for args in resent), sorted([str(old.pk), str(failed.pk)]))
            self.assertEqual({tuple(args[1:]) for args in resent}, {(0, None, 0.0)})
            for model in (fresh, old, failed):
                model.refresh_from_db()
            self.assertEqual(state_of(fresh)["status"], "running")  # untouched
            self.assertEqual(state_of(fresh)["progress_at"], states[fresh]["progress_at"])
            for model in (old, failed):
                self.assertEqual(state_of(model)["status"], "queued")
                self.assertNotIn("attempts", state_of(model))

            # Before the only worker starts (make run passes --resume-running), a running card has no fold
            # running and may have no message left: it is sent again, however recent its progress.
            with self.captureOnCommitCallbacks(execute=True):
                call_command("seed_demo", "--resume-running", stdout=io.StringIO())
            resent = [args for n, args in sent.messages if n.endswith("fold_task")][8:]
            self.assertEqual(sorted(args[0] for args in resent), sorted(str(m.pk) for m in (fresh, old, failed)))
            self.assertEqual({tuple(args[1:]) for args in resent}, {(0, None, 0.0)})
            fresh.refresh_from_db()
            self.assertEqual(state_of(fresh)["status"], "queued")
            self.assertNotIn("fold", state_of(fresh))
            for model in ModelVersion.objects.all():
                model.model_card = {**model.model_card, "cross_validation": {"status": "done", "folds": 3}}
                model.save(update_fields=["model_card"])
            with self.captureOnCommitCallbacks(execute=True):
                call_command("seed_demo", "--resume-running", stdout=io.StringIO())
            self.assertEqual(len([n for n, _ in sent.messages if n.endswith("fold_task")]), 11)
