import datetime as dt

from django.core.exceptions import ValidationError
from django.test import TestCase, TransactionTestCase

from platform_core.accounts.models import Role
from platform_core.audit.models import AuditEvent
from platform_core.audit.services import audit_verify
from platform_core.errors import ApplicationError
from tests.support import require_postgresql
from tests.support.factories import ELIGIBLE, HospitalFactory, TrialWorld, enrol, make_trial, member
from tests.support.races import interleaved
from trials import services
from trials.models import Case, Subject, Trial, TrialSite


class TrialSetUpTests(TestCase):
    def setUp(self):
        self.h1 = HospitalFactory(code="H01")
        self.manager = member(Role.TRIAL_MANAGER, self.h1)

    def test_manager_creates_a_draft_trial_with_its_protocol(self):
        trial = make_trial(
            manager=self.manager,
            hospitals=[self.h1],
            recruiting=False,
            reading_design="unaided_then_aided",
            washout_days=28,
            reference_rule="majority",
        )
        self.assertEqual(trial.status, "draft")
        self.assertEqual(trial.reading_form, ["icdr_grade", "referable_dr", "confidence"])
        event = AuditEvent.objects.get(action="trial.create")
        self.assertEqual(event.trial_ref, "dr-trial")
        self.assertEqual(event.changes["washout_days"], [None, 28])

    def test_a_creator_without_a_site_membership_manages_only_while_it_is_a_draft(self):
        from trials.selectors import trials_for

        elsewhere = member(Role.TRIAL_MANAGER, HospitalFactory(code="H03"), email="creator@visus.example")
        trial = make_trial(manager=elsewhere, hospitals=[self.h1], recruiting=False)
        self.assertIn(trial, trials_for(elsewhere))  # their draft: they set it up
        services.trial_update(actor=elsewhere, trial=trial, title="Renamed draft")
        with self.assertRaisesMessage(ApplicationError, "none of this trial's sites"):
            services.trial_transition(actor=elsewhere, trial=trial, status="recruiting")
        self.assertEqual(Trial.objects.get(pk=trial.pk).status, "draft")
        services.trial_transition(actor=self.manager, trial=trial, status="recruiting")
        # Recruiting: memberships at the trial's sites decide; the creator holds none.
        self.assertNotIn(trial, trials_for(elsewhere))
        with self.assertRaises(ApplicationError):
            services.trial_update(actor=elsewhere, trial=trial, title="Renamed again", reason="x")
        services.trial_update(actor=self.manager, trial=trial, title="Renamed by H01", reason="sponsor's wording")
        self.assertEqual(Trial.objects.get(pk=trial.pk).title, "Renamed by H01")

    def test_only_trial_managers_create_trials(self):
        coordinator = member(Role.COORDINATOR, self.h1)
        with self.assertRaises(ApplicationError):
            make_trial(manager=coordinator, recruiting=False)
        self.assertFalse(Trial.objects.exists())

    def test_bad_protocol_values_are_refused(self):
        for bad in (
            {"modalities": ["xray"]},
            {"reading_form": ["favourite_colour"]},
            {"reading_design": "unaided_then_aided", "washout_days": 0},
            {"slug": "create"},
            {"prefix": "dr 01"},
        ):
            with self.subTest(bad=bad), self.assertRaises(ValidationError):
                make_trial(manager=self.manager, recruiting=False, **{"slug": "t-bad", **bad})
        self.assertFalse(Trial.objects.exists())

    def test_status_transitions_are_checked(self):
        trial = make_trial(manager=self.manager, recruiting=False)
        with self.assertRaisesMessage(ApplicationError, "Add at least one active site"):
            services.trial_transition(actor=self.manager, trial=trial, status="recruiting")
        services.trial_site_add(actor=self.manager, trial=trial, hospital=self.h1, enrolment_target=5)
        with self.assertRaisesMessage(ApplicationError, "cannot go from draft to reading"):
            services.trial_transition(actor=self.manager, trial=trial, status="reading")
        services.trial_transition(actor=self.manager, trial=trial, status="recruiting")
        services.trial_transition(actor=self.manager, trial=trial, status="reading")
        with self.assertRaises(ValidationError):
            services.trial_transition(actor=self.manager, trial=trial, status="closed")
        services.trial_transition(actor=self.manager, trial=trial, status="closed", reason="study complete")
        with self.assertRaisesMessage(ApplicationError, "cannot go from closed to recruiting"):
            services.trial_transition(actor=self.manager, trial=trial, status="recruiting")
        trial.refresh_from_db()
        self.assertEqual(trial.status, "closed")
        statuses = [e.changes["status"] for e in AuditEvent.objects.filter(action="trial.transition").order_by("seq")]
        self.assertEqual(statuses, [["draft", "recruiting"], ["recruiting", "reading"], ["reading", "closed"]])

    def test_protocol_is_fixed_after_draft_but_title_can_change_with_a_reason(self):
        trial = make_trial(manager=self.manager, hospitals=[self.h1])
        with self.assertRaisesMessage(ApplicationError, "reading_form"):
            services.trial_update(actor=self.manager, trial=trial, reading_form=["icdr_grade"], reason="x")
        with self.assertRaises(ValidationError):
            services.trial_update(actor=self.manager, trial=trial, title="New title")
        services.trial_update(actor=self.manager, trial=trial, title="New title", reason="typo in title")
        event = AuditEvent.objects.filter(action="trial.update").get()
        self.assertEqual(event.changes, {"title": ["Trial dr-trial", "New title"]})
        self.assertEqual(event.reason, "typo in title")

    def test_site_added_once(self):
        trial = make_trial(manager=self.manager, hospitals=[self.h1], recruiting=False)
        with self.assertRaisesMessage(ApplicationError, "already a site"):
            services.trial_site_add(actor=self.manager, trial=trial, hospital=self.h1, enrolment_target=3)
        self.assertEqual(TrialSite.objects.count(), 1)


class EnrolmentTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.world = TrialWorld()

    def test_pseudonym_is_issued_per_trial_and_site(self):
        w = self.world
        self.assertEqual(w.subject1.pseudonym, "DR01-H01-0001")
        self.assertEqual(w.subject2.pseudonym, "DR01-H02-0001")
        nxt = enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1)
        self.assertEqual(nxt.pseudonym, "DR01-H01-0002")

    def test_ages_of_ninety_and_over_are_stored_as_90_plus(self):
        w = self.world
        self.assertEqual(enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, age=89).age, "89")
        self.assertEqual(enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, age=90).age, "90+")
        self.assertEqual(enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, age=104).age, "90+")

    def test_enrolment_is_audited_without_identifiers(self):
        event = AuditEvent.objects.filter(action="subject.enroll").order_by("seq").first()
        self.assertEqual(event.hospital_code, "H01")
        self.assertEqual(event.changes["pseudonym"], [None, "DR01-H01-0001"])
        self.assertTrue(audit_verify().ok)

    def test_the_consent_date_is_kept_as_days_before_enrolment_never_as_a_date(self):
        from django.utils import timezone

        today = timezone.localdate()
        subject = services.subject_enroll(**self._enrol_kwargs(consent_date=today - dt.timedelta(days=3)))
        self.assertEqual(subject.consent_days_before_enrolment, 3)
        self.assertNotIn("consent_date", [f.name for f in Subject._meta.get_fields()])
        event = AuditEvent.objects.get(action="subject.enroll", object_id=str(subject.pk))
        self.assertEqual(event.changes["consent_days_before_enrolment"], [None, 3])
        self.assertNotIn(today.isoformat(), str(event.changes))
        self.assertNotIn((today - dt.timedelta(days=3)).isoformat(), str(event.changes))
        self.client.force_login(self.world.manager)
        page = self.client.get(f"/trials/{self.world.trial.slug}/subjects/{subject.pseudonym}/")
        self.assertContains(page, "given 3 days before enrolment")
        self.assertNotContains(page, (today - dt.timedelta(days=3)).isoformat())

    def _enrol_kwargs(self, **overrides):
        w = self.world
        kwargs = {
            "actor": w.coord1,
            "site": TrialSite.objects.get(trial=w.trial, hospital=w.h1),
            "eligibility": dict(ELIGIBLE),
            "consent_date": dt.date(2026, 1, 5),
            "consent_form_version": "v1.0",
            "sex": "male",
            "age": 50,
            "diabetes_type": "type1",
        }
        kwargs.update(overrides)
        return kwargs

    def assert_refused(self, message, exc=ApplicationError, **overrides):
        before = (
            Subject.objects.count(),
            AuditEvent.objects.count(),
            TrialSite.objects.get(trial=self.world.trial, hospital=self.world.h1).last_subject_number,
        )
        with self.assertRaisesMessage(exc, message):
            services.subject_enroll(**self._enrol_kwargs(**overrides))
        after = (
            Subject.objects.count(),
            AuditEvent.objects.count(),
            TrialSite.objects.get(trial=self.world.trial, hospital=self.world.h1).last_subject_number,
        )
        self.assertEqual(before, after, "a refused enrolment changed something")

    def test_missing_consent_is_refused(self):
        self.assert_refused("Record the date", ValidationError, consent_date=None)
        self.assert_refused("version of the consent form", ValidationError, consent_form_version=" ")
        self.assert_refused("cannot be in the future", ValidationError, consent_date=dt.date(2999, 1, 1))

    def test_failed_eligibility_is_refused_with_the_reason(self):
        self.assert_refused(
            "Inclusion criterion not met: Age 18 or over", eligibility={**ELIGIBLE, "Age 18 or over": False}
        )
        self.assert_refused(
            "Exclusion criterion applies: Previous vitreoretinal surgery",
            eligibility={**ELIGIBLE, "Previous vitreoretinal surgery": True},
        )
        self.assert_refused("Inclusion criterion not answered", eligibility={"Previous vitreoretinal surgery": False})

    def test_enrolment_at_a_site_not_coordinated_is_refused(self):
        w = self.world
        self.assert_refused("Only a coordinator of this site", site=TrialSite.objects.get(trial=w.trial, hospital=w.h2))

    def test_enrolment_in_a_closed_or_draft_trial_is_refused(self):
        w = self.world
        services.trial_transition(actor=w.manager, trial=w.trial, status="closed", reason="stopped early")
        self.assert_refused("is closed: enrolment is only possible while it is recruiting")

    def test_a_site_of_a_closed_trial_cannot_be_changed(self):
        w = self.world
        site = TrialSite.objects.get(trial=w.trial, hospital=w.h1)
        services.trial_site_update(actor=w.manager, site=site, status="on_hold", reason="staff shortage")
        services.trial_transition(actor=w.manager, trial=w.trial, status="closed", reason="stopped early")
        events = AuditEvent.objects.count()
        with self.assertRaisesMessage(ApplicationError, "The trial is closed: its sites can no longer be changed."):
            services.trial_site_update(actor=w.manager, site=site, status="active", reason="reopen")
        site.refresh_from_db()
        self.assertEqual(site.status, "on_hold")
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_enrolment_at_a_paused_site_is_refused(self):
        w = self.world
        site = TrialSite.objects.get(trial=w.trial, hospital=w.h1)
        services.trial_site_update(actor=w.manager, site=site, status="on_hold", reason="staff shortage")
        self.assert_refused("enrolment is paused there")

    def test_double_submit_is_refused_and_names_the_subject(self):
        w = self.world
        first = enrol(coordinator=w.coord1, trial=w.trial, hospital=w.h1, token="form-token-1")
        self.assert_refused(f"already submitted: subject {first.pseudonym}", submission_token="form-token-1")

    def test_withdrawal_keeps_the_data_and_flags_the_subject(self):
        w = self.world
        with self.assertRaises(ValidationError):
            services.subject_withdraw(actor=w.coord1, subject=w.subject1, reason="")
        subject = services.subject_withdraw(actor=w.coord1, subject=w.subject1, reason="moved abroad")
        self.assertTrue(subject.is_withdrawn)
        self.assertEqual(Case.objects.filter(subject=subject).count(), 1)
        event = AuditEvent.objects.get(action="subject.withdraw")
        self.assertEqual(event.reason, "moved abroad")
        with self.assertRaisesMessage(ApplicationError, "already withdrawn"):
            services.subject_withdraw(actor=w.coord1, subject=subject, reason="again")
        with self.assertRaisesMessage(ApplicationError, "withdrawn: no new cases"):
            services.case_create(actor=w.coord1, subject=subject, laterality="OS", visit_day=0)

    def test_other_site_coordinator_cannot_withdraw(self):
        w = self.world
        with self.assertRaises(ApplicationError):
            services.subject_withdraw(actor=w.coord2, subject=w.subject1, reason="not mine")
        w.subject1.refresh_from_db()
        self.assertFalse(w.subject1.is_withdrawn)


class CaseTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.world = TrialWorld()

    def test_duplicate_case_is_refused(self):
        w = self.world
        with self.assertRaisesMessage(ApplicationError, "already has a case for OD on day 0"):
            services.case_create(actor=w.coord1, subject=w.subject1, laterality="OD", visit_day=0)
        self.assertEqual(Case.objects.filter(subject=w.subject1).count(), 1)

    def test_case_exclusion_needs_a_reason_and_is_audited(self):
        w = self.world
        with self.assertRaises(ValidationError):
            services.case_set_status(actor=w.coord1, case=w.case1, status="excluded")
        case = services.case_set_status(actor=w.coord1, case=w.case1, status="excluded", reason="image ungradable")
        self.assertEqual(case.exclusion_reason, "image ungradable")
        with self.assertRaises(ValidationError):
            services.case_set_status(actor=w.coord1, case=case, status="open")
        services.case_set_status(actor=w.coord1, case=case, status="open", reason="re-imaged")
        changes = [e.changes["status"] for e in AuditEvent.objects.filter(action="case.status").order_by("seq")]
        self.assertEqual(changes, [["open", "excluded"], ["excluded", "open"]])

    def test_negative_visit_day_is_refused(self):
        w = self.world
        with self.assertRaises(ValidationError):
            services.case_create(actor=w.coord1, subject=w.subject1, laterality="OS", visit_day=-1)


class EnrolWhileCaseCreatedRaceTests(TransactionTestCase):
    """A subject enrolled at a site while a case of another subject of that site is created: both finish, in either
    order (PostgreSQL, real threads). With FOR UPDATE (not NO KEY UPDATE) on the site, numbering held it while
    waiting for the audit chain's lock, and the new case's foreign-key check of its site, at its commit, waited for
    the numbering: a deadlock."""

    def setUp(self):
        require_postgresql()
        self.w = TrialWorld()
        self.subject = self.w.subject1

    def enrol(self) -> None:
        enrol(coordinator=self.w.coord1, trial=self.w.trial, hospital=self.w.h1)

    def create_case(self, day: int) -> None:
        services.case_create(actor=self.w.coord1, subject=self.subject, laterality="OS", visit_day=day)

    def check(self, rounds: int) -> None:
        site = TrialSite.objects.get(trial=self.w.trial, hospital=self.w.h1)
        self.assertEqual(Subject.objects.filter(site=site).count(), site.last_subject_number)
        self.assertEqual(Case.objects.filter(subject=self.subject, laterality="OS").count(), rounds)

    def test_a_case_created_while_a_subject_is_enrolled_at_its_site(self):
        for day in range(1, 4):
            self.assertEqual(interleaved(lambda d=day: self.create_case(d), self.enrol), [])
        self.check(3)

    def test_a_subject_enrolled_while_a_case_is_created_at_its_site(self):
        for day in range(1, 4):
            self.assertEqual(interleaved(self.enrol, lambda d=day: self.create_case(d)), [])
        self.check(3)
