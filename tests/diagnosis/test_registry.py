import io
import json
import tempfile
from pathlib import Path

import torch
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase

from diagnosis.models import ModelVersion
from diagnosis.networks.zoom_in_net import ZoomInNet, ZoomInNetConfig
from diagnosis.registry import ModelIntegrityError, clear_model_cache, model_load, model_register, model_set_status
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support.registry import CARD, checkpoint_bytes, small_dr_network, small_vf_network


class RegistryTests(TestCase):
    def setUp(self):
        clear_model_cache()
        self.addCleanup(clear_model_cache)

    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_register_records_architecture_hash_and_card_and_loads_the_same_weights(self):
        network = small_dr_network()
        model = model_register(actor=None, name="dr", version="1", weights=checkpoint_bytes(network), model_card=CARD)
        self.assertEqual(model.architecture, "zoom_in_net")
        self.assertEqual(model.task, "dr_grading")
        self.assertEqual(len(model.sha256), 64)
        self.assertTrue(model.not_for_clinical_use)
        self.assertEqual(model.input_spec["modality"], "fundus")
        loaded = model_load(model)
        for key, value in network.state_dict().items():
            self.assertTrue(torch.equal(loaded.state_dict()[key], value), key)
        self.assertEqual(AuditEvent.objects.filter(action="model.register").count(), 1)

    def test_plain_state_dict_needs_and_is_checked_against_its_config(self):
        network = small_vf_network()
        buffer = io.BytesIO()
        torch.save(network.state_dict(), buffer)
        with self.assertRaisesMessage(ApplicationError, "Unknown architecture"):
            model_register(actor=None, name="vf", version="1", weights=buffer.getvalue(), model_card=CARD)
        model = model_register(
            actor=None,
            name="vf",
            version="1",
            weights=buffer.getvalue(),
            model_card=CARD,
            architecture="vf_glaucoma",
            config=network.config.to_dict(),
        )
        self.assertEqual(model.task, "glaucoma_vf")

    def test_checkpoint_that_does_not_fit_its_architecture_is_refused(self):
        network = small_dr_network()
        state = network.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        other_config = ZoomInNetConfig.small().to_dict() | {"anet_hidden": 32}
        with self.assertRaisesMessage(ApplicationError, "shape mismatch"):
            model_register(
                actor=None,
                name="dr",
                version="1",
                weights=buffer.getvalue(),
                model_card=CARD,
                architecture="zoom_in_net",
                config=other_config,
            )
        truncated = {k: v for k, v in state.items() if not k.startswith("c_net")}
        buffer = io.BytesIO()
        torch.save(truncated, buffer)
        with self.assertRaisesMessage(ApplicationError, "missing"):
            model_register(
                actor=None,
                name="dr",
                version="1",
                weights=buffer.getvalue(),
                model_card=CARD,
                architecture="zoom_in_net",
                config=ZoomInNetConfig.small().to_dict(),
            )
        with self.assertRaisesMessage(ApplicationError, "could not be read"):
            model_register(actor=None, name="dr", version="1", weights=b"not a checkpoint", model_card=CARD)
        self.assertFalse(ModelVersion.objects.exists())

    def test_model_card_must_say_intended_use_training_data_and_clinical_flag(self):
        from django.core.exceptions import ValidationError

        with self.assertRaises(ValidationError):
            model_register(
                actor=None,
                name="dr",
                version="1",
                weights=checkpoint_bytes(small_dr_network()),
                model_card={"intended_use": "x"},
            )

    def test_weights_changed_in_storage_are_refused_on_load(self):
        model = model_register(
            actor=None, name="dr", version="1", weights=checkpoint_bytes(small_dr_network()), model_card=CARD
        )
        default_storage.delete(model.weights.name)
        default_storage.save(model.weights.name, ContentFile(checkpoint_bytes(small_dr_network(seed=1))))
        with self.assertRaisesMessage(ModelIntegrityError, "differs from the registered"):
            model_load(model)

    def test_duplicate_version_is_refused_and_status_changes_are_audited(self):
        model = model_register(
            actor=None, name="dr", version="1", weights=checkpoint_bytes(small_dr_network()), model_card=CARD
        )
        with self.assertRaisesMessage(ApplicationError, "already registered"):
            model_register(
                actor=None, name="dr", version="1", weights=checkpoint_bytes(small_dr_network()), model_card=CARD
            )
        model_set_status(actor=None, model=model, status="retired", reason="superseded")
        self.assertEqual(
            AuditEvent.objects.filter(action="model.status").get().changes, {"status": ["active", "retired"]}
        )

    def test_a_card_entry_measured_after_registration_is_set_through_an_audited_update(self):
        from django.core.exceptions import ValidationError

        from diagnosis.registry import model_card_update

        model = model_register(
            actor=None, name="dr", version="1", weights=checkpoint_bytes(small_dr_network()), model_card=CARD
        )
        figures = {"auc": 0.71, "n": 20.0}
        model_card_update(actor=None, model=model, changes={"later_figures": figures}, reason="measured later")
        model.refresh_from_db()
        self.assertEqual(model.model_card, {**CARD, "later_figures": figures})
        event = AuditEvent.objects.get(action="model.card_update")
        self.assertEqual(event.changes, {"model_card.later_figures": [None, figures]})
        self.assertEqual(event.reason, "measured later")
        # The same value again records nothing; no reason, a column's mirror or a required entry is refused.
        model_card_update(actor=None, model=model, changes={"later_figures": figures}, reason="again")
        self.assertEqual(AuditEvent.objects.filter(action="model.card_update").count(), 1)
        with self.assertRaisesMessage(ValidationError, "Give a reason"):
            model_card_update(actor=None, model=model, changes={"x": 1}, reason=" ")
        for entry in ("metrics", "operating_threshold", "not_for_clinical_use", "intended_use"):
            with self.subTest(entry=entry), self.assertRaisesMessage(ValidationError, "cannot change"):
                model_card_update(actor=None, model=model, changes={entry: {}}, reason="r")
        model.refresh_from_db()
        self.assertEqual(model.model_card, {**CARD, "later_figures": figures})
        self.assertEqual(AuditEvent.objects.filter(action="model.card_update").count(), 1)


class RegisterModelCommandTests(TestCase):
    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_command_registers_and_retires_previous_versions(self):
        folder = Path(tempfile.mkdtemp())
        (folder / "card.json").write_text(json.dumps(CARD))
        for version in ("1", "2"):
            (folder / f"v{version}.pt").write_bytes(checkpoint_bytes(small_dr_network(seed=int(version))))
            out = io.StringIO()
            call_command(
                "register_model",
                name="dr",
                model_version=version,
                weights=str(folder / f"v{version}.pt"),
                model_card=str(folder / "card.json"),
                retire_previous=True,
                stdout=out,
            )
            self.assertIn(f"Registered dr {version}", out.getvalue())
        self.assertEqual(dict(ModelVersion.objects.values_list("version", "status")), {"1": "retired", "2": "active"})

    def test_command_refuses_a_mismatched_checkpoint_with_a_clear_error(self):
        folder = Path(tempfile.mkdtemp())
        (folder / "card.json").write_text(json.dumps(CARD))
        buffer = io.BytesIO()
        torch.save(ZoomInNet(ZoomInNetConfig.small()).state_dict(), buffer)
        (folder / "w.pt").write_bytes(buffer.getvalue())
        (folder / "config.json").write_text(
            json.dumps(ZoomInNetConfig.small().to_dict() | {"num_crops": 2, "anet_hidden": 8})
        )
        with self.assertRaisesMessage(CommandError, "checkpoint does not fit the architecture"):
            call_command(
                "register_model",
                name="dr",
                model_version="1",
                weights=str(folder / "w.pt"),
                model_card=str(folder / "card.json"),
                architecture="zoom_in_net",
                config=str(folder / "config.json"),
            )
        self.assertFalse(ModelVersion.objects.exists())


class RegistryAdminTests(TestCase):
    def tearDown(self):
        for model in ModelVersion.objects.all():
            default_storage.delete(model.weights.name)

    def test_admin_registers_a_checkpoint_and_reports_a_bad_one(self):
        from tests.support.factories import UserFactory

        admin = UserFactory(is_staff=True, is_superuser=True)
        self.client.force_login(admin)
        good = ContentFile(checkpoint_bytes(small_dr_network()), name="dr.pt")
        response = self.client.post(
            "/admin/diagnosis/modelversion/add/",
            {
                "name": "dr",
                "version": "7",
                "checkpoint": good,
                "architecture_choice": "",
                "config_json": "",
                "model_card_json": json.dumps(CARD),
            },
            follow=True,
        )
        self.assertEqual(response.status_code, 200)
        self.assertTrue(ModelVersion.objects.filter(name="dr", version="7").exists())
        bad = ContentFile(b"garbage", name="bad.pt")
        response = self.client.post(
            "/admin/diagnosis/modelversion/add/",
            {
                "name": "dr",
                "version": "8",
                "checkpoint": bad,
                "architecture_choice": "",
                "config_json": "",
                "model_card_json": json.dumps(CARD),
            },
            follow=True,
        )
        self.assertContains(response, "could not be read as PyTorch weights")
        self.assertFalse(ModelVersion.objects.filter(version="8").exists())
