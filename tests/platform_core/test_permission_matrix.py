"""The permission matrix (issue 13, item 3): every URL pattern of the project (pages, API, reading, evaluation and
the Django admin), requested by every kind of user, answers what ``MATRIX_TEXT`` says.

The table has one row per URL pattern name (its route when it has no name) and one column per actor
(``ACTORS``). A URL pattern without a row fails ``test_every_url_pattern_has_a_row_and_every_row_a_pattern``,
which names it. A row's first line is its GET; the lines under it are its write methods (POST, PUT, PATCH,
DELETE), each sent by every actor with ``WRITE_BODY`` (the fields the forms and serializers ask for, so that a
refusal is the permission's and not only the form's). An API view's write methods must be exactly its handlers.

Codes: ``200`` ... ``415`` are status codes; ``302`` a redirect that is not to a sign-in page (a page's own "done"
or "back"); ``log`` a redirect to the sign-in page (Visus's or the admin's); ``fil`` a private file handed over
(its bytes on the local disk, a presigned redirect on S3). A ``*`` says the request writes: a row inserted,
updated or deleted in a table of the project's apps (an audit event included); every other cell must write
nothing, so a refused request (``log``, 401, 403, 404, 405) never does. A page without write methods is also sent
a POST by every actor, which must write nothing. Each request runs in a savepoint that is rolled back afterwards,
so that no cell depends on another's order, and the client's session is put back as it was.

Every path names objects of hospital A (H01) of one trial in its reading period: its subject, case, file,
prediction, data query, reads, lesion mark, adjudication (``MatrixWorld``). Hospital B's coordinator gets 404 for
each of them (the scoped selectors do not find them: a 403 would tell them the object exists) where their role
reaches the page, 403 where it does not; and no page they get with 200 shows any of hospital A's identifiers.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlparse

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.http import FileResponse
from django.test import Client, TestCase
from django.urls import get_resolver
from rest_framework.views import APIView

from platform_core.accounts.models import Membership, Role
from tests.support.factories import member
from tests.support.reading import GOOD, GOOD_CONF, PASSWORD, ReadingWorld
from tests.support.storage import stored_names
from tests.support.uploads import FIXTURE_PHOTOGRAPH
from tests.support.urls import PARAM, walk_named

# The columns, in the table's order.
ACTORS = ("anon", "coA", "coB", "rdr", "sgn", "pnl", "mgr", "mon", "sta", "mix", "adm")
ACTOR_NAMES = {
    "anon": "anonymous visitor",
    "coA": "coordinator of hospital A (H01), the objects' hospital",
    "coB": "coordinator of hospital B (H02), another hospital of the same trial",
    "rdr": "reader (H01) whose read of the case is an unsigned draft",
    "sgn": "reader (H01) who has signed their read of the case",
    "pnl": "adjudication panel member (a reader at H02)",
    "mgr": "trial manager (H01 and H02)",
    "mon": "monitor (H01)",
    "sta": "statistician (H02)",
    "mix": "coordinator of H01 who also reads in the trial (mixed roles)",
    "adm": "Django superuser and staff, with no role at any hospital",
}
REFUSED = {"log", "401", "403", "404", "405"}
CODES = REFUSED | {"200", "201", "204", "302", "400", "415", "fil"}
SIGN_IN_PATHS = ("/accounts/login/", "/admin/login/")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
OBJECT_PARAM = re.compile(r"<(uuid:pk|path:object_id|id)>")

MATRIX_TEXT = """
# name (GET)                                object/write anon coA  coB  rdr  sgn  pnl  mgr  mon  sta  mix  adm

# Signing in and out, the account's own pages. Anonymous visitors are sent to sign in; nothing here shows trial data.
home                                        -            log  200  200  200  200  200  200  200  200  200  200
# - a signed-in user is sent on (302)
accounts:login                              -            200  302  302  302  302  302  302  302  302  302  302
                                            POST         200  302  302  302  302  302  302  302  302  302  302
# - POST only; signs out (back to sign in)
accounts:logout                             -            405  405  405  405  405  405  405  405  405  405  405
                                            POST         log  log  log  log  log  log  log  log  log  log  log
accounts:password-change                    -            log  200  200  200  200  200  200  200  200  200  200
                                            POST         log  200  200  200  200  200  200  200  200  200  200

# People (trial managers only, people of the hospitals they manage: H01 and H02 for the manager here).
# The person is hospital A's coordinator; an invitation to H01. The others are refused by role (403).
accounts:people                             -            log  403  403  403  403  403  200  403  403  403  403
accounts:people-invite                      -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:people-add-existing                -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:person                             person       log  403  403  403  403  403  200  403  403  403  403
accounts:person-grant                       person       log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:person-revoke                      person       log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:person-unlock                      person       log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:person-deactivate                  person       log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
accounts:invitation-revoke                  invitation   log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  302* 403  403  403  403
# - the token in the link is the invitee's credential: anyone holding it sees the invitation
accounts:invitation-accept                  -            200  200  200  200  200  200  200  200  200  200  200
                                            POST         400  400  400  400  400  400  400  400  400  400  400

# The audit trail: trial managers and monitors, events of their trials; GET only (an export is itself audited: 200*).
audit:event-list                            -            log  403  403  403  403  403  200  200  403  403  403
audit:event-export                          -            log  403  403  403  403  403  200* 200* 403  403  403

# Trials. Every role sees the trials where it holds a role (the superuser holds none: 403). Subjects, cases and
# their files are for SUBJECT_ROLES (coordinators of the site, trial-wide managers, monitors, statisticians):
# readers are refused by role (403), hospital B's coordinator does not find hospital A's objects (404).
trials:trial-list                           -            log  200  200  200  200  200  200  200  200  200  403
trials:trial-create                         -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
# - hospital A's case: its coordinator, the trial-wide roles, the mixed user (a coordinator of H01)
trials:case-detail                          case         log  200  404  403  403  403  200  200  200  200  403
# - POST only (405 on GET before anything is looked up); coordinators of the case's site
trials:case-status                          case         log  405  405  403  403  403  403  403  403  405  403
                                            POST         log  302  404  403  403  403  403  403  403  302  403
trials:case-rnfl                            case         log  405  405  403  403  403  403  403  403  405  403
                                            POST         log  302  404  403  403  403  403  403  403  302  403
# - POST only: monitors of the trial who do not read in it
trials:query-raise                          case         log  403  403  403  403  403  403  405  403  403  403
                                            POST         log  403  403  403  403  403  403  302* 403  403  403
# - the site's coordinator answers (writes); a monitor's 'answer' is refused by the service (302 back, no write);
#   the mixed user reads in the trial, where queries are hidden from readers (404)
trials:query-step                           query        log  405  405  403  403  403  403  405  403  405  403
                                            POST         log  302* 404  403  403  403  403  302  403  404  403
# - a refused withdrawal (the matrix sends no reason) comes back on the case page with its form errors (400)
trials:case-file-retire                     file         log  405  405  403  403  403  403  403  403  405  403
                                            POST         log  400  404  403  403  403  403  403  403  400  403
# - hospital A's file: SUBJECT_ROLES of the case only
trials:case-file                            file         log  fil  404  403  403  403  fil  fil  fil  fil  403
trials:vf-csv-format                        -            log  200  200  403  403  403  200  200  200  200  403
trials:vf-csv-template                      -            log  200  200  403  403  403  200  200  200  200  403
# - the trial page: sites scoped by sites_for (B sees its own), no subjects
trials:trial-detail                         -            log  200  200  200  200  200  200  200  200  200  403
trials:trial-edit                           -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
# - managers; without a move to make it goes back to the trial page
trials:trial-transition                     -            log  403  403  403  403  403  302  403  403  403  403
                                            POST         log  403  403  403  403  403  302  403  403  403  403
# - the completeness grid: the trial's managers and monitors
trials:monitoring                           -            log  403  403  403  403  403  200  200  403  403  403
# - coordinators (their site's queries), managers, monitors; never a reader (the mixed user sees none)
trials:query-list                           -            log  200  200  403  403  403  200  200  403  200  403
trials:site-add                             -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
trials:site-edit                            site         log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
trials:subject-list                         -            log  200  200  403  403  403  200  200  200  200  403
# - coordinators at their own sites (B enrols at H02)
trials:subject-enrol                        -            log  200  200  403  403  403  403  403  403  200  403
                                            POST         log  200  200  403  403  403  403  403  403  200  403
# - hospital A's subject
trials:subject-detail                       -            log  200  404  403  403  403  200  200  200  200  403
# - a coordinator of the subject's site withdraws it (302*)
trials:subject-withdraw                     -            log  405  405  403  403  403  403  403  403  405  403
                                            POST         log  302* 404  403  403  403  403  403  403  302* 403
trials:case-add                             -            log  405  405  403  403  403  403  403  403  405  403
                                            POST         log  302* 404  403  403  403  403  403  403  302* 403

# AI outputs: SUBJECT_ROLES, and never anyone who reads in the trial (the mixed user: 404, as if absent).
diagnosis:prediction-overlay                prediction   log  fil  404  403  403  403  fil  fil  fil  404  403
# - POST only (405 even before sign-in); the trial's managers
diagnosis:fusion-calibrate                  -            405  405  405  405  405  405  405  405  405  405  405
                                            POST         log  403  403  403  403  403  302  403  403  403  403

# The model registry pages: trial managers.
diagnosis:model-list                        -            log  403  403  403  403  403  200  403  403  403  403
diagnosis:model-register                    -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403
diagnosis:model-card                        model        log  403  403  403  403  403  200  403  403  403  403
diagnosis:model-status                      model        log  403  403  403  403  403  405  403  403  403  403
                                            POST         log  403  403  403  403  403  400  403  403  403  403

# Blind reading. A read is its own reader's only (another reader: 404); the draft is the unsigned reader's,
# 'signed' the signed reader's. The panel sees the adjudication and its case's images; managers the set-up pages.
reading:worklist                            -            log  403  403  200  200  200  403  403  403  200  403
# - readers and the panel; serves the reader's own next case (the mixed user's first: 302*)
reading:next                                -            log  403  403  405  405  405  403  403  403  405  403
                                            POST         log  403  403  302  302  302  403  403  403  302* 403
# - managers, monitors, statisticians see progress; only managers change the set-up
reading:manage                              -            log  403  403  403  403  403  200  200  200  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
# - the trial's adjudication panel only
reading:adjudication                        -            log  403  403  403  403  200  403  403  403  403  403
                                            POST         log  403  403  403  403  404  403  403  403  403  403
# - the panel; other readers do not find it (404), other roles are refused by role
reading:adjudication-file                   adjudication log  403  403  404  404  fil  403  403  403  404  403
# - the unsigned reader's own draft
reading:read                                draft        log  403  403  200  404  404  403  403  403  404  403
                                            POST         log  403  403  302  404  404  403  403  403  404  403
reading:read-file                           draft        log  403  403  fil  404  404  403  403  403  404  403
# - AI output inside the reader's own aided read only: this is an unaided read (404)
reading:read-overlay                        draft        log  403  403  404  404  404  403  403  403  404  403
reading:signed-reads                        -            log  403  403  200  200  200  403  403  403  200  403
# - the signed reader's own signed read
reading:amend                               signed       log  403  403  404  200  404  403  403  403  404  403
                                            POST         log  403  403  404  200  404  403  403  403  404  403
reading:reset                               -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
reading:calibration                         -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403
reading:reference                           -            log  403  403  403  403  403  200  403  403  403  403
                                            POST         log  403  403  403  403  403  200  403  403  403  403

# Exports and analyses: managers, statisticians and monitors who do not read in the trial (each export audited;
# the dashboard stores the analyses it computed, evaluation.snapshots).
evaluation:exports                          -            log  403  403  403  403  403  200  200  200  403  403
evaluation:export-download                  -            log  403  403  403  403  403  200* 200* 200* 403  403
evaluation:dashboard                        -            log  403  403  403  403  403  200* 200* 200* 403  403
evaluation:dashboard-status                 -            log  403  403  403  403  403  200  200  200  403  403

# The Django admin: staff only. Everyone else is sent to sign in (or refused with 403 at the admin's sign-in
# page when signed in without access). The superuser, a platform operator, sees every row (ScopedAdminMixin);
# scoping for staff who are not superusers is tested in test_admin_audit.AdminScopeTests. Nothing is deleted
# here (403), subjects, cases, events and AI outputs are read-only (403 on add and on a change's POST).
admin-login                                 -            log  403  403  403  403  403  403  403  403  403  302
                                            POST         log  403  403  403  403  403  403  403  403  403  302
# - to Visus's password page (it counts wrong current passwords and is audited)
admin/password_change/                      -            302  302  302  302  302  302  302  302  302  302  302
                                            POST         302  302  302  302  302  302  302  302  302  302  302
admin/password_change/done/                 -            302  302  302  302  302  302  302  302  302  302  302
                                            POST         302  302  302  302  302  302  302  302  302  302  302
admin:index                                 -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
# - shadowed by admin-login
admin:login                                 -            log  403  403  403  403  403  403  403  403  403  302
                                            POST         log  403  403  403  403  403  403  403  403  403  302
# - Django's admin sends non-staff from its sign-out to its index (302)
admin:logout                                -            302  302  302  302  302  302  302  302  302  302  405
                                            POST         302  302  302  302  302  302  302  302  302  302  log
# - shadowed by the redirect above
admin:password_change                       -            302  302  302  302  302  302  302  302  302  302  302
                                            POST         302  302  302  302  302  302  302  302  302  302  302
# - shadowed by the redirect above
admin:password_change_done                  -            302  302  302  302  302  302  302  302  302  302  302
                                            POST         302  302  302  302  302  302  302  302  302  302  302
admin:autocomplete                          -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  405
admin:jsi18n                                -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  405
admin:view_on_site                          case         log  log  log  log  log  log  log  log  log  log  404
                                            POST         log  log  log  log  log  log  log  log  log  log  404
admin:accounts_user_password_change         person       log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:auth_user_password_change             person       log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_user_changelist              -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_user_add                     -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_user_history                 person       log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_user_delete                  person       log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:accounts_user_change                  person       log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin/accounts/user/<path:object_id>/       person       log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:accounts_hospital_changelist          -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_hospital_add                 -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_hospital_history             hospital     log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_hospital_delete              hospital     log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:accounts_hospital_change              hospital     log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin/accounts/hospital/<path:object_id>/   hospital     log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:accounts_membership_changelist        -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_membership_add               -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_membership_history           membership   log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:accounts_membership_delete            membership   log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:accounts_membership_change            membership   log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/accounts/membership/<path:object_id>/ membership   log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:auth_group_changelist                 -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:auth_group_add                        -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:auth_group_history                    group        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:auth_group_delete                     group        log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:auth_group_change                     group        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/auth/group/<path:object_id>/          group        log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:audit_auditevent_changelist           -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:audit_auditevent_add                  -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:audit_auditevent_history              event        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:audit_auditevent_delete               event        log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:audit_auditevent_change               event        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/audit/auditevent/<path:object_id>/    event        log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:trials_trial_changelist               -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trial_add                      -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trial_history                  trial        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trial_delete                   trial        log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_trial_change                   trial        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin/trials/trial/<path:object_id>/        trial        log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:trials_trialsite_changelist           -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trialsite_add                  -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trialsite_history              site         log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_trialsite_delete               site         log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_trialsite_change               site         log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin/trials/trialsite/<path:object_id>/    site         log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:trials_subject_changelist             -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_subject_add                    -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_subject_history                subject      log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_subject_delete                 subject      log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_subject_change                 subject      log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/trials/subject/<path:object_id>/      subject      log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:trials_case_changelist                -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_case_add                       -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_case_history                   case         log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:trials_case_delete                    case         log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:trials_case_change                    case         log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/trials/case/<path:object_id>/         case         log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:diagnosis_modelversion_changelist     -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_modelversion_add            -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_modelversion_history        model        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_modelversion_delete         model        log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_modelversion_change         model        log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/diagnosis/modelversion/<path:object_id>/ model        log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:diagnosis_inferencejob_changelist     -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_inferencejob_add            -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_inferencejob_history        job          log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_inferencejob_delete         job          log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_inferencejob_change         job          log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/diagnosis/inferencejob/<path:object_id>/ job          log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:diagnosis_prediction_changelist       -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_prediction_add              -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_prediction_history          prediction   log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_prediction_delete           prediction   log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_prediction_change           prediction   log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/diagnosis/prediction/<path:object_id>/ prediction   log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:diagnosis_fusioncalibration_changelist -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_fusioncalibration_add       -            log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_fusioncalibration_history   calibration  log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin:diagnosis_fusioncalibration_delete    calibration  log  log  log  log  log  log  log  log  log  log  403
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin:diagnosis_fusioncalibration_change    calibration  log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  403
admin/diagnosis/fusioncalibration/<path:object_id>/ calibration  log  log  log  log  log  log  log  log  log  log  302
                                            POST         log  log  log  log  log  log  log  log  log  log  302
admin:app_list                              -            log  log  log  log  log  log  log  log  log  log  200
                                            POST         log  log  log  log  log  log  log  log  log  log  200
admin/(?P<url>.*)$                          -            log  log  log  log  log  log  log  log  log  log  404
                                            POST         log  log  log  log  log  log  log  log  log  log  404

# The API: 401 without a session or token. The same rules as the pages, through the same selectors and services.
api:core:token-obtain                       -            405  405  405  405  405  405  405  405  405  405  405
                                            POST         400  400  400  400  400  400  400  400  400  400  400
api:core:me                                 -            401  200  200  200  200  200  200  200  200  200  200
api:core:hospital-list                      -            401  200  200  200  200  200  200  200  200  200  403
api:core:audit-event-list                   -            401  403  403  403  403  403  200  200  403  403  403
api:trials:trial-list                       -            401  200  200  200  200  200  200  200  200  200  403
api:trials:trial-create                     -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:trials:trial-detail                     -            401  200  200  200  200  200  200  200  200  200  403
api:trials:trial-transition                 -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:trials:trial-site-list                  -            401  200  200  200  200  200  200  200  200  200  403
api:trials:trial-site-add                   -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:trials:trial-site-update                site         401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
# - coordinators; the trial is reading, so enrolment is closed (400, nothing written; the site rule: test_trials_api)
api:trials:subject-enroll                   -            401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  400  400  403  403  403  403  403  403  400  403
api:trials:subject-list                     -            401  200  200  403  403  403  200  200  200  200  403
api:trials:subject-detail                   subject      401  200  404  403  403  403  200  200  200  200  403
api:trials:subject-withdraw                 subject      401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  200* 404  403  403  403  403  403  403  200* 403
api:trials:case-create                      subject      401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  201* 404  403  403  403  403  403  403  201* 403
api:trials:case-list                        -            401  200  200  403  403  403  200  200  200  200  403
api:trials:case-detail                      case         401  200  404  403  403  403  200  200  200  200  403
api:trials:case-status                      case         401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  400  404  403  403  403  403  403  403  400  403
api:trials:case-rnfl                        case         401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  400  404  403  403  403  403  403  403  400  403
api:trials:case-file-list                   case         401  200  404  403  403  403  200  200  200  200  403
# - multipart only (415 for this JSON body)
api:trials:case-file-upload                 case         401  405  405  403  403  403  403  403  403  405  403
                                            POST         401  415  404  403  403  403  403  403  403  415  403
api:diagnosis:model-list                    -            401  200  200  200  200  200  200  200  200  200  403
# - blinded for anyone who reads in the trial (the mixed user: 403)
api:diagnosis:case-job-list                 case         401  200  404  403  403  403  200  200  200  403  403
api:diagnosis:case-prediction-list          case         401  200  404  403  403  403  200  200  200  403  403

# API of blind reading.
# - the signed reader has nothing left (200, no new read); the mixed user gets a new read
api:reading:read-next                       -            401  403  403  405  405  405  403  403  403  405  403
                                            POST         401  403  403  200  204  403  403  403  403  200* 403
api:reading:reader-progress                 -            401  403  403  200  200  200  403  403  403  200  403
api:reading:progress-table                  -            401  403  403  403  403  403  200  200  200  403  403
api:reading:setup                           -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  200  403  403  403  403
api:reading:assign                          -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:reading:adjudication-queue              -            401  403  403  403  403  200  403  403  403  403  403
api:reading:panel-add                       -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:reading:calibration-mark                -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:reading:reference-lock                  -            401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  400  403  403  403  403
api:reading:unassign                        assignment   401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  204* 403  403  403  403
# - the panel (400: no signature in the body); other readers do not find it
api:reading:adjudication-sign               adjudication 401  403  403  405  405  405  403  403  403  405  403
                                            POST         401  403  403  404  404  400  403  403  403  404  403
api:reading:read-detail                     draft        401  403  403  200  404  404  403  403  403  404  403
api:reading:read-draft                      draft        401  403  403  405  405  405  403  403  403  405  403
                                            PUT          401  403  403  400  404  404  403  403  403  404  403
api:reading:read-sign                       draft        401  403  403  405  405  405  403  403  403  405  403
                                            POST         401  403  403  400  404  404  403  403  403  404  403
api:reading:read-amend                      signed       401  403  403  405  405  405  403  403  403  405  403
                                            POST         401  403  403  404  400  404  403  403  403  404  403
api:reading:read-reset                      draft        401  403  403  403  403  403  405  403  403  403  403
                                            POST         401  403  403  403  403  403  204* 403  403  403  403
api:reading:mark-add                        draft        401  403  403  405  405  405  403  403  403  405  403
                                            POST         401  403  403  400  404  404  403  403  403  404  403
# - the reader's own marks
api:reading:mark-change                     mark         401  403  403  405  405  405  403  403  403  405  403
                                            PATCH        401  403  403  200  404  404  403  403  403  404  403
                                            DELETE       401  403  403  204* 404  404  403  403  403  404  403
api:evaluation:export-subjects              -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-cases                 -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-reads                 -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-predictions           -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-reference             -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-analysis_referable_dr -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-analysis_glaucoma     -            401  403  403  403  403  403  200* 200* 200* 403  403
api:evaluation:export-dictionary            -            401  403  403  403  403  403  200* 200* 200* 403  403

# The API description: signed-in users (no data).
api-schema                                  -            401  200  200  200  200  200  200  200  200  200  200
api-docs                                    -            log  200  200  200  200  200  200  200  200  200  200
"""

ROW_LINE = re.compile(r"^(?P<name>\S+) +(?P<pk>\S+) +(?P<codes>\S.*)$")
METHOD_LINE = re.compile(r"^ +(?P<method>POST|PUT|PATCH|DELETE) +(?P<codes>\S.*)$")


@dataclass(frozen=True)
class Row:
    """One URL pattern: ``pk`` names the fixture object of its ``<pk>`` ("-": none); ``cells`` maps each method
    to the expected code of each actor, in ``ACTORS`` order."""

    pk: str
    cells: dict[str, tuple[str, ...]]


def parse_matrix(text: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    row = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if match := ROW_LINE.match(line):
            if match["name"] in rows:
                raise ValueError(f"line {number} of the matrix: {match['name']} has two rows")
            row = rows[match["name"]] = Row(pk=match["pk"], cells={"GET": tuple(match["codes"].split())})
        elif (match := METHOD_LINE.match(line)) and row is not None:
            row.cells[match["method"]] = tuple(match["codes"].split())
        else:
            raise ValueError(f"line {number} of the matrix is neither a row nor a comment: {line!r}")
    return rows


MATRIX = parse_matrix(MATRIX_TEXT)

# What a write sends: the fields the project's forms and serializers ask for, so that a refusal is the permission's
# and not only the form's (an authorised actor's answer to it is in the table too).
WRITE_BODY = {
    "reason": "Permission matrix check",
    "text": "Permission matrix check",
    "status": "complete",
    "laterality": "OS",
    "visit_day": 3,
    "thickness_um": 80,
    "action": "withdraw",
    "phase": "unaided",
    "group": "resident",
    "version": 1,
    "enrolment_target": 12,
}


def actual_code(response) -> str:
    if isinstance(response, FileResponse):
        return "fil"
    if response.status_code == 302:
        location = urlparse(response["Location"])
        if location.path.startswith(SIGN_IN_PATHS):
            return "log"
        if location.netloc and location.netloc != "testserver":
            return "fil"  # a presigned URL of the object store
        return "302"
    return str(response.status_code)


# Whose writes the "nothing written" check sees: every table of these apps (Django's sessions are not among them:
# a request may touch its own session).
WATCHED_APPS = {"accounts", "audit", "trials", "diagnosis", "reading", "evaluation", "demo", "auth", "admin"}


def watched_models() -> list:
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in WATCHED_APPS and model._meta.managed and not model._meta.proxy
    ]


def write_counter():
    """A function that says how much the watched tables have been written in this transaction: on PostgreSQL the
    rows inserted, updated and deleted so far (its per-transaction statistics, one cheap query); elsewhere their
    row counts (where a change through a service still shows as its audit event)."""
    models = watched_models()
    if connection.vendor != "postgresql":
        return lambda: tuple(model._base_manager.count() for model in models)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(oid) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r' "
            "AND relnamespace = current_schema()::regnamespace",
            [[model._meta.db_table for model in models]],
        )
        tables = cursor.fetchone()[0]
    assert len(tables) == len(models), "every watched table found"
    sql = (
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_inserted(t) + pg_stat_get_xact_tuples_updated(t) "
        "+ pg_stat_get_xact_tuples_deleted(t)), 0) FROM unnest(%s::oid[]) AS t"
    )

    def count():
        with connection.cursor() as cursor:
            cursor.execute(sql, [tables])
            return cursor.fetchone()[0]

    return count


class MatrixWorld:
    """The one fixture of the matrix: ``ReadingWorld``'s trial in its reading period (hospitals H01 and H02), and
    on hospital A's case every kind of object a URL can name."""

    @staticmethod
    def build():
        from diagnosis.models import FusionCalibration, InferenceJob, Prediction
        from platform_core.accounts import services as account_services
        from platform_core.audit.models import AuditEvent
        from reading import services
        from reading.models import Adjudication, Phase, Read
        from tests.support.registry import register_small_models
        from trials.models import CaseFile
        from trials.query_services import data_query_raise

        w = ReadingWorld()
        # The mixed-role user coordinates at H01 and reads in the trial.
        w.mixed = member(Role.COORDINATOR, w.h1, email="mixed@visus.example")
        Membership.objects.create(user=w.mixed, hospital=w.h1, role=Role.READER)
        services.reader_assign(actor=w.manager, trial=w.trial, reader=w.mixed, phase=Phase.UNAIDED, group="resident")
        w.admin = get_user_model().objects.create_superuser(
            email="admin@visus.example", password="correct-horse-battery-staple", full_name="Ada Admin"
        )
        w.file = CaseFile.objects.get(case=w.case1)
        # The reader's draft is on hospital A's case (signing the cases served before it); the signed reader has
        # signed their read of that case.
        w.draft = MatrixWorld._read_of(w, w.reader, w.case1, sign=False)
        w.signed = MatrixWorld._read_of(w, w.reader3, w.case1, sign=True)
        while MatrixWorld._sign_next(w, w.reader3):  # and every other case: nothing is left for them to read
            pass
        w.mark = services.mark_add(
            reader=w.reader, read=w.draft, case_file=w.file, kind="microaneurysm", shape="point", x=10, y=10
        )
        w.adjudication = Adjudication.objects.create(case=w.case1, trial=w.trial, discordance=["icdr_grade"])
        w.assignment = w.assignments[(w.reader.pk, Phase.UNAIDED)]
        model, _ = register_small_models()
        w.model = model
        job = InferenceJob.objects.create(case=w.case1, model_version=model, status="succeeded")
        w.prediction = Prediction.objects.create(
            job=job,
            case=w.case1,
            model_version=model,
            runtime_ms=1.0,
            attention_overlay=FIXTURE_PHOTOGRAPH,
            class_probabilities=[0.2] * 5,
        )
        w.job = job
        w.calibration = FusionCalibration.objects.create(
            trial=w.trial, fundus_model=model, weights={}, eyes=2, positives=1, fitted_by=w.manager
        )
        w.group = Group.objects.order_by("name").first() or Group.objects.create(name="Matrix group")
        w.event = AuditEvent.objects.filter(object_id=str(w.case1.pk)).order_by("seq").first()
        w.query = data_query_raise(actor=w.monitor, case=w.case1, text="Which camera took this photograph?")
        w.coord1_membership = Membership.objects.get(user=w.coord1, hospital=w.h1, role=Role.COORDINATOR)
        with TestCase.captureOnCommitCallbacks(execute=True):
            w.invitation = account_services.invitation_create(
                actor=w.manager,
                email="invited@visus.example",
                full_name="Ivy Invited",
                hospital=w.h1,
                role=Role.READER,
                link_base="http://testserver/accounts/invitations/",
            )
        w.token = re.search(r"/accounts/invitations/([^/\s]+)/", mail.outbox[-1].body).group(1)
        assert Read.objects.filter(pk=w.draft.pk, status="draft").exists()
        return w

    @staticmethod
    def _sign_next(w, reader):
        from reading import services

        read = services.read_next(reader=reader, trial=w.trial, phase="unaided")
        if read is None:
            return None
        read = services.read_draft_save(
            reader=reader, read=read, version=read.version, answers=GOOD, confidences=GOOD_CONF
        )
        return services.read_sign(
            read=read, signer=reader, password=PASSWORD, meaning=services.MEANING_READ, version=read.version
        )

    @staticmethod
    def _read_of(w, reader, case, *, sign):
        from reading import services
        from reading.models import Read

        while True:
            read = services.read_next(reader=reader, trial=w.trial, phase="unaided")
            if read.case_id == case.pk and not sign:
                return read
            signed = MatrixWorld._sign_next(w, reader)
            if signed.case_id == case.pk:
                return Read.objects.get(pk=signed.pk)


OBJECTS = (
    "case",
    "subject",
    "site",
    "file",
    "prediction",
    "query",
    "draft",
    "signed",
    "mark",
    "adjudication",
    "assignment",
    "model",
    "person",
    "invitation",
    "hospital",
    "membership",
    "group",
    "event",
    "trial",
    "job",
    "calibration",
)


class PermissionMatrixBase(TestCase):
    """The fixture (built once for the class) and one request of the matrix."""

    @classmethod
    def setUpClass(cls):
        cls._stored_before = stored_names("cases") | stored_names("models")
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        for name in (stored_names("cases") | stored_names("models")) - cls._stored_before:
            default_storage.delete(name)

    @classmethod
    def setUpTestData(cls):
        cls.w = MatrixWorld.build()

    def setUp(self):
        w = self.w
        users = {
            "coA": w.coord1,
            "coB": w.coord2,
            "rdr": w.reader,
            "sgn": w.reader3,
            "pnl": w.adjudicator,
            "mgr": w.manager,
            "mon": w.monitor,
            "sta": w.statistician,
            "mix": w.mixed,
            "adm": w.admin,
        }
        self.clients = {"anon": Client()}
        for actor, user in users.items():
            self.clients[actor] = Client()
            self.clients[actor].force_login(user)
        self.cookies = {actor: copy.deepcopy(client.cookies) for actor, client in self.clients.items()}
        self.values = {
            "slug": w.trial.slug,
            "pseudonym": w.subject1.pseudonym,
            "file_pk": str(w.file.pk),
            "prediction_pk": str(w.prediction.pk),
            "membership_pk": str(w.coord1_membership.pk),
            "variant": "preview",
            "phase": "unaided",
            "step": "answer",
            "token": w.token,
            "name": "reads",
            "app_label": "trials",
            "url": "no-such-page/",
            "content_type_id": str(ContentType.objects.get_for_model(w.case1).pk),
        }
        self.objects = {
            "case": w.case1,
            "subject": w.subject1,
            "site": w.case1.subject.site,
            "file": w.file,
            "prediction": w.prediction,
            "query": w.query,
            "draft": w.draft,
            "signed": w.signed,
            "mark": w.mark,
            "adjudication": w.adjudication,
            "assignment": w.assignment,
            "model": w.model,
            "person": w.coord1,
            "invitation": w.invitation,
            "hospital": w.h1,
            "membership": w.coord1_membership,
            "group": w.group,
            "event": w.event,
            "trial": w.trial,
            "job": w.job,
            "calibration": w.calibration,
        }
        # What hospital B's coordinator must never see of hospital A (in a page they get with 200).
        self.hospital_a = [
            w.subject1.pseudonym,
            str(w.subject1.pk),
            str(w.case1.pk),
            str(w.case1.subject.site.pk),
            str(w.file.pk),
            w.file.sha256,
            str(w.prediction.pk),
            str(w.query.pk),
            w.query.text,
        ]
        self.writes = write_counter()
        self.routes = {name: (route, pattern) for name, route, pattern in walk_named(get_resolver().url_patterns)}

    def path_for(self, route: str, pk: str) -> str:
        """The concrete path of a route: ``<pk>`` (and the admin's object id) is the fixture object named ``pk``,
        every other parameter its value in ``self.values``."""
        values = dict(self.values)
        if pk != "-":
            values["pk"] = values["object_id"] = values["id"] = str(self.objects[pk].pk)
        route = route.replace("^", "").replace("$", "")
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], route)  # regex routes (the admin's)
        return "/" + PARAM.sub(lambda m: values[m.group("name")], route)

    def request(self, actor: str, method: str, path: str) -> tuple[str, bool, str]:
        """One request, in a savepoint that is rolled back afterwards (so that no cell depends on another's
        order): its code, whether it wrote anything, and its body."""
        client = self.clients[actor]
        # A sign-out or a new signature in an earlier cell changed the client's session: back to its own.
        client.cookies = copy.deepcopy(self.cookies[actor])
        cache.clear()  # sign-in throttles count per address, and every actor here is one address
        savepoint = transaction.savepoint()
        before = self.writes()
        try:
            code, body = self._send(client, method, path)
            wrote = self.writes() != before
        finally:
            transaction.savepoint_rollback(savepoint)
        return code, wrote, body

    def _send(self, client: Client, method: str, path: str) -> tuple[str, str]:
        if method == "GET":
            response = client.get(path)
        elif path.startswith("/api/"):
            response = client.generic(method, path, json.dumps(WRITE_BODY), content_type="application/json")
        else:
            form = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in WRITE_BODY.items()}
            response = client.generic(method, path, urlencode(form), content_type="application/x-www-form-urlencoded")
        code = actual_code(response)
        # A streamed body (CSV, file) runs to its end, so that its errors count; this also closes it.
        content = b"".join(response.streaming_content) if response.streaming else response.content
        return code, content.decode(errors="replace")

    def walk(self, names: list[str]) -> int:
        """Every cell of these rows; and a POST by every actor to each page without write methods (its
        function could still write), which must write nothing and answer no 5xx."""
        checked = 0
        for name in names:
            row = MATRIX[name]
            route, pattern = self.routes[name]
            path = self.path_for(route, row.pk)
            for method, codes in row.cells.items():
                for actor, expected in zip(ACTORS, codes, strict=True):
                    with self.subTest(cell=f"{method} {name} as {actor}"):
                        code, wrote, body = self.request(actor, method, path)
                        got = code + ("*" if wrote else "")
                        self.assertEqual(
                            got, expected, f"{method} {path} as the {ACTOR_NAMES[actor]}: the table says {expected}"
                        )
                        if actor == "coB" and code == "200":
                            shown = [secret for secret in self.hospital_a if secret in body.replace(path, "")]
                            self.assertEqual(shown, [], f"{method} {path} shows hospital B's coordinator A's data")
                    checked += 1
            if len(row.cells) == 1 and not hasattr(pattern.callback, "cls"):
                for actor in ACTORS:
                    with self.subTest(cell=f"POST {name} (a page without write methods) as {actor}"):
                        code, wrote, _ = self.request(actor, "POST", path)
                        self.assertIn(code, CODES, f"POST {path} as the {ACTOR_NAMES[actor]}")
                        self.assertFalse(wrote, f"POST {path} as the {ACTOR_NAMES[actor]} wrote: give it a POST row")
                    checked += 1
        return checked


class PermissionMatrixTests(PermissionMatrixBase):
    def test_every_url_pattern_has_a_row_and_every_row_a_pattern(self):
        missing = [name for name in self.routes if name not in MATRIX]
        self.assertEqual(
            missing, [], "URL patterns without a row in the permission matrix: add one to MATRIX_TEXT for each"
        )
        self.assertEqual(sorted(set(MATRIX) - set(self.routes)), [], "rows that name no URL pattern")

    def test_the_table_is_well_formed(self):
        for name, row in MATRIX.items():
            self.assertIn(row.pk, {"-", *OBJECTS}, name)
            route = self.routes[name][0]
            self.assertEqual(
                row.pk != "-", bool(OBJECT_PARAM.search(route)), f"{name}: names an object iff its route does"
            )
            for method, codes in row.cells.items():
                self.assertEqual(len(codes), len(ACTORS), f"{name} {method}: one code per actor")
                for code in codes:
                    self.assertIn(code.removesuffix("*"), CODES, f"{name} {method}")
                    if code.removesuffix("*") in REFUSED:
                        self.assertFalse(code.endswith("*"), f"{name} {method}: a refused request writes nothing")
        # An API view's write methods are its handlers: a new handler needs its line in the table.
        for name, (_route, pattern) in self.routes.items():
            view = getattr(pattern.callback, "cls", None)
            if view is not None and issubclass(view, APIView):
                handlers = {m for m in WRITE_METHODS if hasattr(view, m.lower())}
                self.assertEqual(set(MATRIX[name].cells) - {"GET"}, handlers, f"{name}: the view's write methods")

    def test_the_write_check_sees_a_write_and_the_savepoint_undoes_it(self):
        from trials.services import case_create

        savepoint = transaction.savepoint()
        before = self.writes()
        case_create(actor=self.w.coord1, subject=self.w.subject1, laterality="OS", visit_day=9)
        self.assertNotEqual(self.writes(), before)
        transaction.savepoint_rollback(savepoint)
        self.assertFalse(self.w.subject1.cases.filter(visit_day=9).exists())

    def test_pages(self):
        names = [n for n, (route, _) in self.routes.items() if not route.startswith(("api/", "admin/"))]
        self.assertGreater(self.walk(names), 700)

    def test_api(self):
        names = [n for n, (route, _) in self.routes.items() if route.startswith("api/")]
        self.assertGreater(self.walk(names), 700)

    def test_admin(self):
        names = [n for n, (route, _) in self.routes.items() if route.startswith("admin/")]
        self.assertGreater(self.walk(names), 1000)
