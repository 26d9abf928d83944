"""One vocabulary of audit actions; an explicit list of auditable fields per model; one save-then-record helper."""

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import SimpleTestCase, TestCase

from platform_core.accounts.models import Hospital, Role
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import (
    SecretInAuditPayload,
    audit_record,
    audit_snapshot,
    audited_delete,
    audited_save,
)
from platform_core.audit.vocabulary import (
    ACTION_NAME,
    UnknownAuditAction,
    auditable_fields,
    is_secret_name,
    register_actions,
    register_auditable_fields,
    registered_actions,
    registered_auditable_fields,
)
from tests.support.factories import HospitalFactory, UserFactory, make_trial, member
from trials.models import Trial


class ActionVocabularyTests(TestCase):
    def test_an_unregistered_action_is_refused_with_a_clear_message_and_nothing_is_written(self):
        with self.assertRaisesMessage(UnknownAuditAction, "Unknown audit action 'trialsite.update': register it"):
            audit_record(actor=None, action="trialsite.update")
        self.assertFalse(AuditEvent.objects.exists())

    def test_each_app_registers_the_actions_its_services_record(self):
        owners = {name: action.owner for name, action in registered_actions().items()}
        self.assertEqual(owners["trial_site.update"], "trials")
        self.assertEqual(owners["membership.revoke"], "accounts")
        self.assertEqual(owners["inference_job.queue"], "diagnosis")
        self.assertEqual(owners["audit_event.redact"], "audit")

    def test_every_registered_action_is_entity_dot_verb_with_a_description(self):
        for name, action in registered_actions().items():
            self.assertRegex(name, ACTION_NAME)
            self.assertTrue(action.description)

    def test_each_entity_is_spelled_one_way(self):
        """trial_site.update and trialsite.change named the same thing two ways (the admin wrote model names)."""
        spellings: dict[str, set[str]] = {}
        for name in registered_actions():
            entity = name.split(".")[0]
            spellings.setdefault(entity.replace("_", ""), set()).add(entity)
        self.assertEqual({k: v for k, v in spellings.items() if len(v) > 1}, {})
        self.assertEqual(spellings["trialsite"], {"trial_site"})

    def test_names_are_checked_and_owned_by_one_app(self):
        with self.assertRaisesMessage(ImproperlyConfigured, "not of the form entity.verb"):
            register_actions("tests", {"TrialSite-Change": "bad"})
        with self.assertRaisesMessage(ImproperlyConfigured, "registered by both trials and tests"):
            register_actions("tests", {"trial_site.update": "taken"})

    def test_a_services_write_uses_the_registered_name(self):
        manager = member(Role.TRIAL_MANAGER, HospitalFactory())
        make_trial(manager=manager, slug="t1", recruiting=False)
        self.assertEqual(AuditEvent.objects.get().action, "trial.create")
        self.assertIn("trial.create", registered_actions())


class SecretNamesTests(SimpleTestCase):
    def test_secret_looking_names(self):
        for name in ("password", "password1", "new_password2", "key_digest", "api-key", "deid_key", "Token", "salt"):
            self.assertTrue(is_secret_name(name), name)
        for name in ("email", "sha256", "api_tokens", "keyboard_layout", "status", "monkey"):
            self.assertFalse(is_secret_name(name), name)

    def test_a_secret_field_can_never_be_declared_auditable(self):
        for spec in ("password", "deid_key", "key_digest", "user.password"):
            with self.assertRaisesMessage(ImproperlyConfigured, "names a secret"):
                register_auditable_fields("tests.Anything", ["email", spec])

    def test_no_registered_model_audits_a_secret(self):
        declared = registered_auditable_fields()
        self.assertIn("accounts.user", declared)
        self.assertIn("trials.trial", declared)
        for label, fields in declared.items():
            for field in fields:
                self.assertFalse(any(is_secret_name(part) for part in field.path), f"{label}.{field.path}")
        self.assertNotIn("password", {f.name for f in auditable_fields("accounts.User")})
        self.assertNotIn("deid_key", {f.name for f in auditable_fields("trials.Trial")})


class AuditRecordRefusesSecretsTests(TestCase):
    def test_a_payload_key_naming_a_secret_is_refused_and_nothing_is_written(self):
        for key in ("password1", "password", "key_digest", "token"):
            with self.assertRaisesMessage(SecretInAuditPayload, f"Refused to record {key} in the audit trail"):
                audit_record(actor=None, action="user.create", changes={key: [None, "hunter2"]})
        self.assertFalse(AuditEvent.objects.exists())


class AuditedSaveTests(TestCase):
    def setUp(self):
        self.actor = UserFactory()

    def test_a_new_row_records_its_declared_fields_and_nothing_else(self):
        manager = member(Role.TRIAL_MANAGER, HospitalFactory())
        trial = Trial(
            slug="t1",
            protocol_number="P-1",
            title="T",
            subject_prefix="T1",
            created_by=manager,
            modalities=["fundus"],
            reading_form=["icdr_grade"],
        )
        event = audited_save(trial, actor=manager, action="trial.create", trial_ref="t1")
        declared = {f.name for f in auditable_fields("trials.Trial")}
        self.assertEqual(set(event.changes), declared)
        self.assertNotIn("deid_key", event.changes)
        self.assertNotIn(trial.deid_key, str(event.changes))
        self.assertEqual(event.changes["modalities"], [None, ["fundus"]])
        self.assertEqual((event.object_id, event.trial_ref), (str(trial.pk), "t1"))
        self.assertTrue(Trial.objects.filter(pk=trial.pk).exists())

    def test_a_change_records_only_the_declared_fields_that_changed(self):
        hospital = Hospital(code="H05", name="Five")
        audited_save(hospital, actor=self.actor, action="hospital.create")
        before = audit_snapshot(hospital)
        hospital.name, hospital.country = "Hospital Five", "NL"
        event = audited_save(hospital, actor=self.actor, action="hospital.create", before=before, reason="typo")
        self.assertEqual(event.changes, {"name": ["Five", "Hospital Five"], "country": ["", "NL"]})
        self.assertEqual(event.reason, "typo")
        self.assertEqual(Hospital.objects.get(pk=hospital.pk).name, "Hospital Five")

    def test_related_objects_are_recorded_by_the_declared_attribute(self):
        hospital = HospitalFactory(code="H07")
        user = UserFactory(email="reader@visus.example")
        from platform_core.accounts.models import Membership

        event = audited_save(
            Membership(user=user, hospital=hospital, role=Role.READER), actor=self.actor, action="membership.grant"
        )
        self.assertEqual(event.changes["user"], [None, "reader@visus.example"])
        self.assertEqual(event.changes["hospital"], [None, "H07"])

    def test_an_event_never_records_a_change_the_save_leaves_out(self):
        hospital = HospitalFactory(name="Before")
        before = audit_snapshot(hospital)
        hospital.name, hospital.country = "After", "NL"
        with self.assertRaisesMessage(ValueError, "country changed but not in update_fields"):
            audited_save(
                hospital,
                actor=self.actor,
                action="hospital.create",
                before=before,
                update_fields=["name", "updated_at"],
            )
        self.assertEqual(Hospital.objects.get(pk=hospital.pk).name, "Before")
        self.assertFalse(AuditEvent.objects.exists())

    def test_a_change_without_the_before_snapshot_is_a_programming_error(self):
        hospital = HospitalFactory()
        hospital.name = "Renamed"
        with self.assertRaisesMessage(TypeError, "needs before=audit_snapshot(instance)"):
            audited_save(hospital, actor=self.actor, action="hospital.create")

    def test_an_invalid_row_is_refused_by_full_clean_and_nothing_is_written(self):
        with self.assertRaises(ValidationError):
            audited_save(Hospital(code="", name="No code"), actor=self.actor, action="hospital.create")
        self.assertFalse(Hospital.objects.filter(name="No code").exists())
        self.assertFalse(AuditEvent.objects.exists())

    def test_a_delete_records_the_declared_fields_as_they_were_and_needs_a_reason(self):
        hospital = HospitalFactory(code="H08", name="Eight", country="NL")
        with self.assertRaisesMessage(ValidationError, "Give a reason for deleting this."):
            audited_delete(hospital, actor=self.actor, action="test.delete", reason=" ")
        self.assertTrue(Hospital.objects.filter(pk=hospital.pk).exists())
        pk = hospital.pk
        event = audited_delete(hospital, actor=self.actor, action="test.delete", reason="created by mistake")
        self.assertFalse(Hospital.objects.filter(pk=pk).exists())
        self.assertEqual(event.changes, {"code": ["H08", None], "name": ["Eight", None], "country": ["NL", None]})
        self.assertEqual((event.object_id, event.reason), (str(pk), "created by mistake"))

    def test_a_model_without_declared_fields_is_refused(self):
        with self.assertRaisesMessage(ImproperlyConfigured, "declares no auditable fields"):
            audited_save(AuditEvent(seq=1), actor=self.actor, action="test.event")
