"""People (issue 10, item 4): managers invite, grant and revoke roles, unlock and deactivate, at their hospitals
only, through audited services and pages."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core import mail
from django.core.exceptions import ValidationError
from django.test import TestCase, override_settings
from django.utils import timezone

from platform_core.accounts import services
from platform_core.accounts.models import Invitation, Membership, Role, SignInFailure, User
from platform_core.accounts.selectors import managed_hospitals_for, people_for
from platform_core.audit.models import AuditEvent
from platform_core.errors import ApplicationError
from tests.support.factories import TEST_PASSWORD, HospitalFactory, MembershipFactory, make_trial, member

NEW_PASSWORD = "lantern-orchard-velvet-42"
LINK_BASE = "http://testserver/accounts/invitations/"


def token_from(message) -> str:
    match = re.search(r"/accounts/invitations/([^/\s]+)/", message.body)
    assert match, message.body
    return match.group(1)


class PeopleWorld:
    """The manager manages H01 and H02; H03 is a site of their trial where they hold no role; H09 is not theirs."""

    def __init__(self) -> None:
        self.h1 = HospitalFactory(code="H01")
        self.h2 = HospitalFactory(code="H02")
        self.h3 = HospitalFactory(code="H03")
        self.h9 = HospitalFactory(code="H09")
        self.manager = member(Role.TRIAL_MANAGER, self.h1, email="manager@visus.example", full_name="Mia Manager")
        MembershipFactory(user=self.manager, hospital=self.h2, role=Role.TRIAL_MANAGER)
        self.coord3 = member(Role.COORDINATOR, self.h3, email="coord3@visus.example", full_name="Cleo Three")
        self.coord1 = member(Role.COORDINATOR, self.h1, email="coord1@visus.example", full_name="Cora One")
        self.coord2 = member(Role.COORDINATOR, self.h2, email="coord2@visus.example", full_name="Carl Two")
        self.outsider = member(Role.COORDINATOR, self.h9, email="outsider@visus.example", full_name="Otto Out")
        self.other_manager = member(Role.TRIAL_MANAGER, self.h9, email="other@visus.example")
        self.trial = make_trial(manager=self.manager, hospitals=[self.h1, self.h2, self.h3])


class ScopeTests(TestCase):
    def setUp(self):
        self.w = PeopleWorld()

    def test_a_manager_manages_the_hospitals_where_they_hold_the_role_only(self):
        # Not H03, a site of their trial where they hold no role: a role granted there would reach every trial
        # at H03, including trials they do not manage.
        self.assertEqual(list(managed_hospitals_for(self.w.manager).values_list("code", flat=True)), ["H01", "H02"])
        people = set(people_for(self.w.manager))
        self.assertIn(self.w.coord1, people)
        self.assertIn(self.w.coord2, people)
        self.assertNotIn(self.w.coord3, people)
        self.assertNotIn(self.w.outsider, people)
        with self.assertRaises(ValidationError):
            services.person_role_grant(
                actor=self.w.manager, user=self.w.coord1, hospital=self.w.h3, role=Role.READER, reason="x"
            )

    def test_a_revoked_manager_manages_nobody(self):
        from platform_core.accounts.services import membership_revoke

        for membership in Membership.objects.filter(user=self.w.manager):
            membership_revoke(actor=self.w.other_manager, membership=membership, reason="left")
        self.assertFalse(people_for(self.w.manager).exists())

    def test_people_who_manage_nothing_manage_nobody(self):
        self.assertFalse(managed_hospitals_for(self.w.coord1).exists())
        self.assertFalse(people_for(self.w.coord1).exists())


class InvitationServiceTests(TestCase):
    def setUp(self):
        self.w = PeopleWorld()

    def invite(self, **overrides):
        fields = {
            "actor": self.w.manager,
            "email": " New.Reader@Visus.example ",
            "full_name": "Nora Reader",
            "hospital": self.w.h1,
            "role": Role.READER,
            "link_base": LINK_BASE,
        }
        fields.update(overrides)
        with self.captureOnCommitCallbacks(execute=True):
            return services.invitation_create(**fields)

    def test_an_invitation_is_mailed_once_with_a_link_whose_token_is_not_stored(self):
        invitation = self.invite()
        self.assertEqual(invitation.email, "new.reader@visus.example")
        self.assertEqual(len(mail.outbox), 1)
        message = mail.outbox[0]
        self.assertEqual(message.to, ["new.reader@visus.example"])
        token = token_from(message)
        self.assertNotIn(token, invitation.token_digest)
        self.assertEqual(invitation.token_digest, services.invitation_token_digest(token))
        event = AuditEvent.objects.get(action="invitation.create")
        self.assertEqual(event.hospital_code, "H01")
        self.assertEqual(event.changes["role"], [None, "reader"])
        self.assertNotIn(token, str(event.changes))
        self.assertNotIn(invitation.token_digest, str(event.changes))

    def test_accepting_creates_the_account_with_its_role_once(self):
        self.invite()
        token = token_from(mail.outbox[0])
        user = services.invitation_accept(token=token, full_name="Nora K. Reader", password=NEW_PASSWORD)
        self.assertTrue(user.check_password(NEW_PASSWORD))
        self.assertEqual(user.full_name, "Nora K. Reader")
        self.assertTrue(Membership.objects.filter(user=user, hospital=self.w.h1, role=Role.READER, is_active=True))
        actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
        self.assertEqual(actions[-3:], ["user.create", "invitation.accept", "membership.grant"])
        grant = AuditEvent.objects.filter(action="membership.grant").latest("seq")
        self.assertEqual(grant.actor_id, self.w.manager.pk)
        with self.assertRaises(ApplicationError) as used:
            services.invitation_accept(token=token, full_name="Someone", password=NEW_PASSWORD)
        self.assertEqual(used.exception.status, 410)
        self.assertIn("already been used", used.exception.message)
        self.assertEqual(User.objects.filter(email="new.reader@visus.example").count(), 1)

    def test_an_expired_invitation_is_refused_and_creates_nothing(self):
        invitation = self.invite()
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        with self.assertRaises(ApplicationError) as expired:
            services.invitation_accept(token=token_from(mail.outbox[0]), full_name="N", password=NEW_PASSWORD)
        self.assertIn("expired", expired.exception.message)
        self.assertFalse(User.objects.filter(email="new.reader@visus.example").exists())

    @override_settings(VISUS_INVITATION_DAYS=2)
    def test_the_link_expires_after_the_configured_days(self):
        invitation = self.invite()
        self.assertAlmostEqual(
            (invitation.expires_at - timezone.now()).total_seconds(), timedelta(days=2).total_seconds(), delta=60
        )

    def test_a_weak_password_is_refused_and_the_link_still_works(self):
        self.invite()
        token = token_from(mail.outbox[0])
        with self.assertRaises(ValidationError) as weak:
            services.invitation_accept(token=token, full_name="Nora", password="password")
        self.assertIn("password", weak.exception.message_dict)
        self.assertFalse(User.objects.filter(email="new.reader@visus.example").exists())
        self.assertIsNotNone(services.invitation_accept(token=token, full_name="Nora", password=NEW_PASSWORD))

    def test_an_unknown_token_is_refused(self):
        with self.assertRaises(ApplicationError) as unknown:
            services.invitation_accept(token="not-a-token", full_name="N", password=NEW_PASSWORD)
        self.assertEqual(unknown.exception.status, 404)

    def test_a_withdrawn_invitation_cannot_be_used(self):
        invitation = self.invite()
        with self.assertRaises(ValidationError):
            services.invitation_revoke(actor=self.w.manager, invitation=invitation, reason=" ")
        services.invitation_revoke(actor=self.w.manager, invitation=invitation, reason="typo in the address")
        self.assertEqual(AuditEvent.objects.filter(action="invitation.revoke").count(), 1)
        with self.assertRaises(ApplicationError) as withdrawn:
            services.invitation_accept(token=token_from(mail.outbox[0]), full_name="N", password=NEW_PASSWORD)
        self.assertIn("withdrawn", withdrawn.exception.message)

    def test_an_invitation_stops_working_once_its_sender_no_longer_manages_the_hospital(self):
        # The role would be granted in the inviter's name: not after their own manager role at H01 ended.
        self.invite()
        Membership.objects.filter(user=self.w.manager, hospital=self.w.h1).update(is_active=False)
        with self.assertRaises(ApplicationError) as left:
            services.invitation_accept(token=token_from(mail.outbox[0]), full_name="N", password=NEW_PASSWORD)
        self.assertEqual(left.exception.status, 410)
        self.assertIn("no longer manages the people of H01", left.exception.message)
        self.assertFalse(User.objects.filter(email="new.reader@visus.example").exists())

    def test_refusals_write_nothing_and_send_nothing(self):
        events = AuditEvent.objects.count()
        cases = [
            ({"hospital": self.w.h9}, "hospital"),  # not the manager's hospital
            ({"email": "not-an-address"}, "email"),
            ({"email": "coord1@visus.example"}, "email"),  # has an account already
            ({"full_name": "  "}, "full_name"),
            ({"role": "director"}, "role"),
        ]
        for overrides, field in cases:
            with self.subTest(overrides=overrides), self.assertRaises(ValidationError) as refused:
                self.invite(**overrides)
            self.assertIn(field, refused.exception.message_dict)
        self.assertEqual((AuditEvent.objects.count(), Invitation.objects.count(), len(mail.outbox)), (events, 0, 0))

    def test_a_second_invitation_to_the_same_address_is_refused_while_the_first_waits(self):
        self.invite()
        with self.assertRaises(ValidationError) as double:
            self.invite()
        self.assertIn("already waiting", str(double.exception))
        self.assertEqual(Invitation.objects.count(), 1)

    def test_an_address_with_an_account_elsewhere_is_invited_as_if_it_had_none(self):
        # Otto's account is at H09 only: the inviter learns nothing of it. The same answer, the same invitation and
        # the same audit trail as for an address without an account; the e-mail (to Otto alone) tells him that an
        # administrator gives his account the role, and the link refuses to make a second account.
        fresh = self.invite(email="nobody@visus.example")
        foreign = self.invite(email="Outsider@Visus.example")
        self.assertEqual(
            [(i.email, i.hospital.code, i.is_pending) for i in (fresh, foreign)],
            [("nobody@visus.example", "H01", True), ("outsider@visus.example", "H01", True)],
        )
        self.assertEqual(AuditEvent.objects.filter(action="invitation.create").count(), 2)
        self.assertEqual([m.to for m in mail.outbox], [["nobody@visus.example"], ["outsider@visus.example"]])
        self.assertEqual(mail.outbox[0].subject, mail.outbox[1].subject)
        self.assertIn("already have a Visus account", mail.outbox[1].body)
        self.assertNotIn("already have a Visus account", mail.outbox[0].body)
        with self.assertRaises(ValidationError) as again:  # the same refusal for both while they wait
            self.invite(email="outsider@visus.example")
        self.assertIn("already waiting", str(again.exception))
        self.assertNotIn("/accounts/invitations/", mail.outbox[1].body)  # no link that cannot work
        self.assertFalse(Membership.objects.filter(user=self.w.outsider, hospital=self.w.h1).exists())
        self.assertEqual(User.objects.filter(email="outsider@visus.example").count(), 1)

    def test_another_hospitals_waiting_invitation_is_not_revealed(self):
        # H09's manager invited the address first: H01's manager can still invite it, and whoever accepts first
        # makes the account; the other link then says the address has one.
        self.invite(actor=self.w.other_manager, hospital=self.w.h9, email="shared@visus.example")
        self.invite(email="shared@visus.example")
        self.assertEqual(Invitation.objects.filter(email="shared@visus.example").count(), 2)
        services.invitation_accept(token=token_from(mail.outbox[0]), full_name="S", password=NEW_PASSWORD)
        with self.assertRaises(ApplicationError) as second:
            services.invitation_accept(token=token_from(mail.outbox[1]), full_name="S", password=NEW_PASSWORD)
        self.assertEqual(second.exception.status, 409)
        self.assertIn("already has a Visus account", second.exception.message)
        page = self.client.get(f"/accounts/invitations/{token_from(mail.outbox[1])}/")  # no password form
        self.assertContains(page, "already has a Visus account: sign in with it", status_code=409)
        self.assertNotContains(page, "password1", status_code=409)
        self.assertEqual(Membership.objects.filter(user__email="shared@visus.example").count(), 1)

    def test_a_coordinator_cannot_invite(self):
        with self.assertRaises(ValidationError):
            self.invite(actor=self.w.coord1)


class RoleServiceTests(TestCase):
    def setUp(self):
        self.w = PeopleWorld()

    def test_grant_and_revoke_with_a_reason_are_audited(self):
        membership = services.person_role_grant(
            actor=self.w.manager, user=self.w.coord2, hospital=self.w.h1, role=Role.READER, reason="grades for us"
        )
        grant = AuditEvent.objects.filter(action="membership.grant").latest("seq")
        self.assertEqual(
            (grant.reason, grant.hospital_code, grant.actor_id), ("grades for us", "H01", self.w.manager.pk)
        )
        services.person_role_revoke(actor=self.w.manager, membership=membership, reason="left the study")
        revoke = AuditEvent.objects.filter(action="membership.revoke").latest("seq")
        self.assertEqual(revoke.reason, "left the study")
        membership.refresh_from_db()
        self.assertFalse(membership.is_active)

    def test_grant_refusals(self):
        events = AuditEvent.objects.count()
        with self.assertRaises(ValidationError):  # no reason
            services.person_role_grant(
                actor=self.w.manager, user=self.w.coord1, hospital=self.w.h1, role="reader", reason=""
            )
        with self.assertRaises(ValidationError):  # not the manager's hospital
            services.person_role_grant(
                actor=self.w.manager, user=self.w.coord1, hospital=self.w.h9, role="reader", reason="x"
            )
        with self.assertRaises(ValidationError) as double:  # holds it already (a double submit)
            services.person_role_grant(
                actor=self.w.manager, user=self.w.coord1, hospital=self.w.h1, role="coordinator", reason="x"
            )
        self.assertIn("already holds", str(double.exception))
        self.assertEqual(AuditEvent.objects.count(), events)

    def test_an_account_of_another_hospital_gets_no_role_from_a_manager(self):
        # Otto holds a role at H09 only: knowing his address is not enough to take him into H01.
        events = AuditEvent.objects.count()
        with self.assertRaises(ValidationError) as refused:
            services.person_role_grant(
                actor=self.w.manager, user=self.w.outsider, hospital=self.w.h1, role=Role.READER, reason="guest"
            )
        self.assertIn("no role at a hospital you manage", str(refused.exception))
        self.assertFalse(Membership.objects.filter(user=self.w.outsider, hospital=self.w.h1).exists())
        self.assertEqual(AuditEvent.objects.count(), events)
        # An account of the manager's own hospitals gets another role there.
        services.person_role_grant(
            actor=self.w.manager, user=self.w.coord2, hospital=self.w.h1, role=Role.READER, reason="grades for us"
        )

    def test_a_fellow_managers_manager_role_is_revoked_by_an_administrator_only(self):
        fellow = member(Role.TRIAL_MANAGER, self.w.h1, email="fellow@visus.example", full_name="Fay Fellow")
        reader_role = MembershipFactory(user=fellow, hospital=self.w.h1, role=Role.READER)
        their_manager_role = Membership.objects.get(user=fellow, role=Role.TRIAL_MANAGER)
        with self.assertRaises(ValidationError) as refused:
            services.person_role_revoke(actor=self.w.manager, membership=their_manager_role, reason="took over")
        self.assertIn("managers do not remove each other", str(refused.exception))
        with self.assertRaises(ValidationError) as deactivate:
            services.person_deactivate(actor=self.w.manager, user=fellow, reason="took over")
        self.assertIn("managers do not remove each other", str(deactivate.exception))
        their_manager_role.refresh_from_db()
        fellow.refresh_from_db()
        self.assertTrue(their_manager_role.is_active and fellow.is_active)
        self.assertFalse(AuditEvent.objects.filter(action__in=["membership.revoke", "user.update"]).exists())
        # Their other roles are revoked as anyone's.
        services.person_role_revoke(actor=self.w.manager, membership=reader_role, reason="stops reading")
        # An administrator (a superuser) may.
        admin = member(Role.TRIAL_MANAGER, self.w.h1, email="root@visus.example", is_superuser=True)
        services.person_role_revoke(actor=admin, membership=their_manager_role, reason="left the trial office")
        their_manager_role.refresh_from_db()
        self.assertFalse(their_manager_role.is_active)

    def test_revoke_refusals(self):
        own = Membership.objects.get(user=self.w.manager, hospital=self.w.h1)
        elsewhere = Membership.objects.get(user=self.w.outsider)
        theirs = Membership.objects.get(user=self.w.coord1)
        with self.assertRaises(ValidationError):
            services.person_role_revoke(actor=self.w.manager, membership=own, reason="x")
        with self.assertRaises(ValidationError):
            services.person_role_revoke(actor=self.w.manager, membership=elsewhere, reason="x")
        with self.assertRaises(ValidationError):
            services.person_role_revoke(actor=self.w.manager, membership=theirs, reason="  ")
        services.person_role_revoke(actor=self.w.manager, membership=theirs, reason="moved away")
        with self.assertRaises(ValidationError) as again:
            services.person_role_revoke(actor=self.w.manager, membership=theirs, reason="moved away")
        self.assertIn("already revoked", str(again.exception))
        self.assertEqual(AuditEvent.objects.filter(action="membership.revoke").count(), 1)


class UnlockAndDeactivateServiceTests(TestCase):
    def setUp(self):
        self.w = PeopleWorld()

    def lock(self, user):
        User.objects.filter(pk=user.pk).update(
            failed_login_count=5, locked_until=timezone.now() + timedelta(minutes=15)
        )
        user.refresh_from_db()

    def test_a_manager_unlocks_a_locked_account_at_their_hospital_through_user_unlock(self):
        self.lock(self.w.coord2)
        services.person_unlock(actor=self.w.manager, user=self.w.coord2, reason="called the help desk")
        self.w.coord2.refresh_from_db()
        self.assertFalse(self.w.coord2.is_locked)
        self.assertEqual(self.w.coord2.failed_login_count, 0)
        event = AuditEvent.objects.get(action="user.unlock")
        self.assertEqual((event.actor_id, event.reason), (self.w.manager.pk, "called the help desk"))
        self.assertTrue(self.client.login(email="coord2@visus.example", password=TEST_PASSWORD))

    def test_unlock_refusals(self):
        self.lock(self.w.outsider)
        with self.assertRaises(ValidationError):
            services.person_unlock(actor=self.w.manager, user=self.w.outsider, reason="x")
        with self.assertRaises(ValidationError) as not_locked:
            services.person_unlock(actor=self.w.manager, user=self.w.coord1, reason="x")
        self.assertIn("not locked", str(not_locked.exception))
        self.lock(self.w.coord1)
        with self.assertRaises(ValidationError):
            services.person_unlock(actor=self.w.manager, user=self.w.coord1, reason="")
        self.assertFalse(AuditEvent.objects.filter(action="user.unlock").exists())
        self.w.outsider.refresh_from_db()
        self.assertTrue(self.w.outsider.is_locked)

    def test_deactivating_ends_sign_in_and_is_audited(self):
        services.person_deactivate(actor=self.w.manager, user=self.w.coord1, reason="left the hospital")
        self.w.coord1.refresh_from_db()
        self.assertFalse(self.w.coord1.is_active)
        event = AuditEvent.objects.filter(action="user.update").latest("seq")
        self.assertEqual(event.changes["is_active"], [True, False])
        self.assertEqual(event.reason, "left the hospital")
        self.assertFalse(self.client.login(email="coord1@visus.example", password=TEST_PASSWORD))
        with self.assertRaises(ValidationError) as again:
            services.person_deactivate(actor=self.w.manager, user=self.w.coord1, reason="x")
        self.assertIn("already deactivated", str(again.exception))

    def test_deactivating_ends_the_persons_open_session(self):
        from django.test import Client

        theirs = Client()
        theirs.force_login(self.w.coord1)
        self.assertEqual(theirs.get("/").status_code, 200)
        services.person_deactivate(actor=self.w.manager, user=self.w.coord1, reason="left the hospital")
        self.assertEqual(theirs.get("/").status_code, 302)

    def test_deactivate_refusals(self):
        MembershipFactory(user=self.w.coord2, hospital=self.w.h9, role=Role.READER)
        admin = member(Role.READER, self.w.h1, email="admin@visus.example", is_staff=True)
        cases = [
            (self.w.manager, "your own"),
            (self.w.coord2, "hospitals you do not manage"),
            (self.w.outsider, "no role at a hospital you manage"),
            (admin, "administrator"),
        ]
        for user, message in cases:
            with self.subTest(user=user.email), self.assertRaises(ValidationError) as refused:
                services.person_deactivate(actor=self.w.manager, user=user, reason="x")
            self.assertIn(message, str(refused.exception))
        with self.assertRaises(ValidationError):
            services.person_deactivate(actor=self.w.manager, user=self.w.coord1, reason=" ")
        self.assertEqual(User.objects.filter(is_active=False).count(), 0)


class PeoplePageTests(TestCase):
    def setUp(self):
        self.w = PeopleWorld()
        self.client.force_login(self.w.manager)

    def test_only_trial_managers_reach_the_people_pages(self):
        for user in (self.w.coord1, self.w.outsider):
            self.client.force_login(user)
            self.assertEqual(self.client.get("/accounts/people/").status_code, 403)
            self.assertEqual(self.client.get(f"/accounts/people/{self.w.coord1.pk}/").status_code, 403)
        self.client.logout()
        self.assertEqual(self.client.get("/accounts/people/").status_code, 302)

    def test_the_list_shows_the_people_of_managed_hospitals_with_labels(self):
        page = self.client.get("/accounts/people/")
        self.assertContains(page, "Cora One")
        self.assertContains(page, "Carl Two")
        self.assertContains(page, "Coordinator at H02")
        self.assertNotContains(page, "Otto Out")
        self.assertContains(self.client.get("/"), 'href="/accounts/people/"')

    def test_the_list_shows_addresses_blocked_from_signing_in(self):
        now = timezone.now()
        for address in ["198.51.100.7", "203.0.113.9"]:
            SignInFailure.objects.create(
                user=self.w.coord1,
                address=address,
                count=5,
                window_started=now,
                blocked_until=now + timedelta(minutes=5),
            )
        # An ended block, and a count below the threshold, block nothing.
        SignInFailure.objects.create(
            user=self.w.coord2,
            address="192.0.2.1",
            count=5,
            window_started=now,
            blocked_until=now - timedelta(minutes=1),
        )
        SignInFailure.objects.create(user=self.w.coord2, address="192.0.2.2", count=1, window_started=now)
        page = self.client.get("/accounts/people/")
        self.assertContains(page, "Sign-ins blocked from 2 addresses", count=1)
        self.assertNotContains(page, "Sign-ins blocked from 1 address")
        # The person page says the same.
        self.assertContains(
            self.client.get(f"/accounts/people/{self.w.coord1.pk}/"), "Sign-ins blocked from 2 addresses"
        )

    def test_a_person_at_another_hospital_is_not_found(self):
        self.assertEqual(self.client.get(f"/accounts/people/{self.w.outsider.pk}/").status_code, 404)
        response = self.client.post(f"/accounts/people/{self.w.outsider.pk}/deactivate/", {"deactivate-reason": "x"})
        self.assertEqual(response.status_code, 404)
        membership = Membership.objects.get(user=self.w.outsider)
        response = self.client.post(
            f"/accounts/people/{self.w.coord1.pk}/roles/{membership.pk}/revoke/", {"revoke-reason": "x"}
        )
        self.assertEqual(response.status_code, 404)
        self.w.outsider.refresh_from_db()
        self.assertTrue(self.w.outsider.is_active)
        self.assertTrue(Membership.objects.get(pk=membership.pk).is_active)

    def test_invite_page_sends_the_invitation_and_refuses_bad_input_clearly(self):
        with self.captureOnCommitCallbacks(execute=True):
            bad = self.client.post("/accounts/people/invite/", {"email": "x@visus.example", "full_name": "X"})
        self.assertEqual(bad.status_code, 400)
        self.assertContains(bad, "This field is required", status_code=400)
        with self.captureOnCommitCallbacks(execute=True):
            taken = self.client.post(
                "/accounts/people/invite/",
                {"email": "coord1@visus.example", "full_name": "X", "hospital": self.w.h1.pk, "role": "reader"},
            )
        self.assertContains(taken, "already has an account at your hospitals", status_code=400)
        # An account of another hospital: the answer of an address without one (the invitation is sent).
        answers = []
        for email in ("outsider@visus.example", "ghost@visus.example"):
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(
                    "/accounts/people/invite/",
                    {"email": email, "full_name": "X", "hospital": self.w.h1.pk, "role": "reader"},
                    follow=True,
                )
            messages = [str(m) for m in response.context["messages"]]
            answers.append((response.status_code, response.redirect_chain, [m.replace(email, "@") for m in messages]))
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(answers[0][:2], (200, [("/accounts/people/", 302)]))
        mail.outbox.clear()
        with self.captureOnCommitCallbacks(execute=True):
            done = self.client.post(
                "/accounts/people/invite/",
                {"email": "nora@visus.example", "full_name": "Nora Reader", "hospital": self.w.h2.pk, "role": "reader"},
                follow=True,
            )
        self.assertContains(done, "Invitation sent to nora@visus.example")
        self.assertContains(done, "Reader at H02")
        self.assertEqual(len(mail.outbox), 1)
        self.assertIn("http://testserver/accounts/invitations/", mail.outbox[0].body)

    def test_the_invitation_page_creates_the_account_then_refuses_a_second_use(self):
        with self.captureOnCommitCallbacks(execute=True):
            services.invitation_create(
                actor=self.w.manager,
                email="nora@visus.example",
                full_name="Nora Reader",
                hospital=self.w.h1,
                role=Role.READER,
                link_base=LINK_BASE,
            )
        url = f"/accounts/invitations/{token_from(mail.outbox[0])}/"
        self.client.logout()
        page = self.client.get(url)
        self.assertContains(page, "Reader")
        self.assertContains(page, "nora@visus.example")
        mismatch = self.client.post(url, {"full_name": "Nora", "password1": NEW_PASSWORD, "password2": "other"})
        self.assertContains(mismatch, "do not match", status_code=400)
        weak = self.client.post(url, {"full_name": "Nora", "password1": "12345678", "password2": "12345678"})
        self.assertEqual(weak.status_code, 400)
        self.assertFalse(User.objects.filter(email="nora@visus.example").exists())
        done = self.client.post(url, {"full_name": "Nora", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
        self.assertRedirects(done, "/accounts/login/")
        self.assertTrue(self.client.login(email="nora@visus.example", password=NEW_PASSWORD))
        self.client.logout()
        again = self.client.get(url)
        self.assertContains(again, "already been used", status_code=410)
        self.assertEqual(self.client.get("/accounts/invitations/nonsense/").status_code, 404)

    def test_person_page_grants_revokes_unlocks_and_deactivates(self):
        url = f"/accounts/people/{self.w.coord2.pk}/"
        no_reason = self.client.post(f"{url}grant/", {"grant-hospital": self.w.h1.pk, "grant-role": "reader"})
        self.assertContains(no_reason, "This field is required", status_code=400)
        granted = self.client.post(
            f"{url}grant/", {"grant-hospital": self.w.h1.pk, "grant-role": "reader", "grant-reason": "extra grader"}
        )
        self.assertRedirects(granted, url)
        membership = Membership.objects.get(user=self.w.coord2, hospital=self.w.h1, role="reader")
        self.assertContains(self.client.get(url), "Reader")
        revoked = self.client.post(f"{url}roles/{membership.pk}/revoke/", {"revoke-reason": "no longer grading"})
        self.assertRedirects(revoked, url)
        self.assertFalse(Membership.objects.get(pk=membership.pk).is_active)
        User.objects.filter(pk=self.w.coord2.pk).update(
            failed_login_count=5, locked_until=timezone.now() + timedelta(minutes=10)
        )
        self.assertContains(self.client.get(url), "Unlock account")
        self.assertRedirects(self.client.post(f"{url}unlock/", {"unlock-reason": "verified by phone"}), url)
        self.assertFalse(User.objects.get(pk=self.w.coord2.pk).is_locked)
        refused = self.client.post(f"{url}unlock/", {"unlock-reason": "again"})
        self.assertContains(refused, "not locked", status_code=400)
        self.assertRedirects(self.client.post(f"{url}deactivate/", {"deactivate-reason": "left"}), url)
        self.assertFalse(User.objects.get(pk=self.w.coord2.pk).is_active)
        actions = set(AuditEvent.objects.values_list("action", flat=True))
        self.assertTrue({"membership.grant", "membership.revoke", "user.unlock", "user.update"} <= actions)

    def test_add_existing_account_by_email(self):
        missing = self.client.post(
            "/accounts/people/add-existing/",
            {"email": "ghost@visus.example", "hospital": self.w.h1.pk, "role": "reader", "reason": "x"},
        )
        self.assertContains(missing, "No account at your hospitals has this address", status_code=400)
        other = self.client.post(
            "/accounts/people/add-existing/",
            {"email": "outsider@visus.example", "hospital": self.w.h9.pk, "role": "reader", "reason": "x"},
        )
        self.assertEqual(other.status_code, 400)  # H09 is not a choice
        # An account of another hospital: the same answer as no account at all, and nothing granted.
        foreign = self.client.post(
            "/accounts/people/add-existing/",
            {"email": "outsider@visus.example", "hospital": self.w.h1.pk, "role": "reader", "reason": "guest grader"},
        )
        self.assertContains(foreign, "No account at your hospitals has this address", status_code=400)
        self.assertFalse(Membership.objects.filter(user=self.w.outsider, hospital=self.w.h1).exists())
        done = self.client.post(
            "/accounts/people/add-existing/",
            {"email": "coord2@visus.example", "hospital": self.w.h1.pk, "role": "reader", "reason": "extra grader"},
        )
        self.assertRedirects(done, f"/accounts/people/{self.w.coord2.pk}/")
        self.assertTrue(Membership.objects.filter(user=self.w.coord2, hospital=self.w.h1, role="reader").exists())

    def test_the_person_page_says_who_revokes_a_fellow_managers_role(self):
        fellow = member(Role.TRIAL_MANAGER, self.w.h1, email="fellow@visus.example", full_name="Fay Fellow")
        page = self.client.get(f"/accounts/people/{fellow.pk}/")
        self.assertContains(page, "An administrator revokes a trial manager's role")
        self.assertNotContains(page, "Revoke Trial manager at H01")
        self.assertContains(page, "Managers do not remove each other")
        membership = Membership.objects.get(user=fellow)
        refused = self.client.post(
            f"/accounts/people/{fellow.pk}/roles/{membership.pk}/revoke/", {"revoke-reason": "took over"}
        )
        self.assertContains(refused, "managers do not remove each other", status_code=400)
        self.assertTrue(Membership.objects.get(pk=membership.pk).is_active)


class PeopleQueryCountTests(TestCase):
    def test_the_people_list_costs_the_same_queries_for_more_people(self):
        w = PeopleWorld()
        self.client.force_login(w.manager)

        def queries() -> int:
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as captured:
                self.assertEqual(self.client.get("/accounts/people/").status_code, 200)
            return len(captured)

        few = queries()
        for n in range(8):
            reader = member(Role.READER, w.h1 if n % 2 else w.h2, email=f"reader{n}@visus.example")
            SignInFailure.objects.create(  # an address blocked on each: counted in the same query
                user=reader,
                address="198.51.100.7",
                count=5,
                window_started=timezone.now(),
                blocked_until=timezone.now() + timedelta(minutes=5),
            )
        with self.captureOnCommitCallbacks(execute=True):
            services.invitation_create(
                actor=w.manager,
                email="x@visus.example",
                full_name="X",
                hospital=w.h1,
                role="reader",
                link_base=LINK_BASE,
            )
        self.assertEqual(queries(), few)
