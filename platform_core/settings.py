"""Visus settings: one module, read from the environment.

Embedded defaults need no server (SQLite, media on local disk, Celery on a filesystem broker).
Production (``DJANGO_ENV=production``) requires its secrets and refuses to start without them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from platform_core.config import Env, MissingSetting, production_refusals, sqlite_options

BASE_DIR = Path(__file__).resolve().parent.parent

DJANGO_ENV = os.environ.get("DJANGO_ENV", "development").strip().lower()
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'development' or 'production', not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
env = Env(os.environ, production=PRODUCTION)

DATA_DIR = Path(env.str("VISUS_DATA_DIR", str(BASE_DIR / "var")))


def _private_data_dir() -> Path:
    """The data folder (database, keys, media on a laptop) readable by the owner only."""
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    if DATA_DIR.stat().st_mode & 0o077:
        try:
            DATA_DIR.chmod(0o700)
        except PermissionError:  # not ours (a shared mount): leave it, the files themselves are 0600
            pass
    return DATA_DIR


def _embedded_secret_key(name: str = "secret_key") -> str:
    """A per-install key kept in the data folder (0600), so sessions (and the audit chain) survive restarts."""
    path = _private_data_dir() / name
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env.str("DJANGO_SECRET_KEY", required=True) or ("" if PRODUCTION else _embedded_secret_key())
# The audit chain's HMAC key: outside the database, so that database write access alone cannot re-hash the trail.
# Keep it (and a copy in the organisation's key store): without it the trail cannot be verified.
AUDIT_CHAIN_KEY = env.str("VISUS_AUDIT_KEY", required=True) or (
    "" if PRODUCTION else _embedded_secret_key("audit_chain_key")
)
DEBUG = env.bool("DJANGO_DEBUG", False) and not PRODUCTION
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"], required=True)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Who gets the lock-out alerts (mail_admins; failed requests are logged, not mailed: see LOGGING). Without
# DJANGO_ADMINS nobody is mailed.
ADMINS = [(email, email) for email in env.list("DJANGO_ADMINS", [])]
SERVER_EMAIL = env.str("DJANGO_SERVER_EMAIL", "visus@localhost")
EMAIL_HOST = env.str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool("DJANGO_EMAIL_USE_TLS", False)
# people: invitations are e-mailed. The embedded default prints them on the console; production sends them
# through the SMTP server above (DJANGO_EMAIL_*).
EMAIL_BACKEND = env.str(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env.str("DJANGO_DEFAULT_FROM_EMAIL", SERVER_EMAIL)
VISUS_INVITATION_DAYS = env.int("VISUS_INVITATION_DAYS", 7)

INSTALLED_APPS = [
    # First, so that its changepassword command (audited) replaces Django's, which writes no audit event.
    "platform_core.accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "platform_core.audit",
    "trials",
    "diagnosis",
    "reading",
    "evaluation",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "platform_core.accounts.middleware.IdleTimeoutMiddleware",
    "platform_core.accounts.middleware.NoStoreMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Content-Security-Policy (django-csp): scripts only from Visus's own static files, never inline, so an injected
# <script> or on* attribute does not run. Styles allow inline (plotly and OpenSeadragon set element styles); images
# may be data:/blob: URLs (plot exports, the viewer's canvases). Nothing may frame Visus.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

ROOT_URLCONF = "platform_core.urls"
WSGI_APPLICATION = "platform_core.wsgi.application"
ASGI_APPLICATION = "platform_core.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "platform_core.accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", required=True)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    _sqlite_file = _private_data_dir() / "visus.sqlite3"
    if not _sqlite_file.exists():  # created 0600 here; SQLite gives its -wal and -shm files the same mode
        os.close(os.open(_sqlite_file, os.O_WRONLY | os.O_CREAT, 0o600))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "visus.sqlite3"),
            "OPTIONS": sqlite_options(),
            "TEST": {"NAME": DATA_DIR / "test-visus.sqlite3"},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(sqlite_options())
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEST_RUNNER = "platform_core.test_runner.VisusTestRunner"

# --- Accounts -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["platform_core.accounts.backends.LockoutModelBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
# Failed sign-ins before the account is locked, and for how long (21 CFR 11.300).
VISUS_LOCKOUT_THRESHOLD = env.int("VISUS_LOCKOUT_THRESHOLD", 5)
VISUS_LOCKOUT_MINUTES = env.int("VISUS_LOCKOUT_MINUTES", 15)
# Sign-in failures from all addresses before the account itself locks (VISUS_LOCKOUT_THRESHOLD counts per account
# and address, and for a signed-in user's password re-entry: password change, e-signature).
VISUS_ACCOUNT_LOCKOUT_THRESHOLD = env.int("VISUS_ACCOUNT_LOCKOUT_THRESHOLD", 20)
# Idle logoff (HIPAA automatic logoff; 30 minutes as in REDCap).
VISUS_IDLE_TIMEOUT_MINUTES = env.int("VISUS_IDLE_TIMEOUT_MINUTES", 30)
# The idle check is IdleTimeoutMiddleware's (so it can say why you were signed out); the session
# itself lives longer and ends when the browser closes.
SESSION_COOKIE_AGE = max(VISUS_IDLE_TIMEOUT_MINUTES * 60 * 2, 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", str(DATA_DIR / "staticfiles")))
MEDIA_ROOT = Path(env.str("VISUS_MEDIA_ROOT", str(DATA_DIR / "media")))
# Hashed names (cached for ten years, "immutable"), gzip and brotli copies: whitenoise's compressed manifest
# storage, filled by collectstatic (production; `make run` sets VISUS_STATIC_MANIFEST=1). Development and tests
# serve the files as they are, from the finders.
STATIC_MANIFEST = env.bool("VISUS_STATIC_MANIFEST", PRODUCTION)
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST
# Files without a hash in their name (anything referenced outside {% static %}): an hour.
WHITENOISE_MAX_AGE = env.int("VISUS_STATIC_MAX_AGE", 3600) if STATIC_MANIFEST else 60
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

VISUS_PRESIGNED_URL_SECONDS = env.int("VISUS_PRESIGNED_URL_SECONDS", 300)
# Uploads: the largest file accepted and the largest image (pixels) decoded.
VISUS_MAX_UPLOAD_MB = env.int("VISUS_MAX_UPLOAD_MB", 256)
VISUS_MAX_IMAGE_PIXELS = env.int("VISUS_MAX_IMAGE_PIXELS", 60_000_000)
VISUS_MIN_IMAGE_SIDE = env.int("VISUS_MIN_IMAGE_SIDE", 256)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Uploaded files up to FILE_UPLOAD_MAX_MEMORY_SIZE stay in memory; larger ones are streamed in 64 KiB chunks to a
# temporary file without a name on disk (O_TMPFILE: gone when the request ends or the worker dies), so a request's
# memory does not grow with the file (tests/benchmarks/bench_upload_memory.py). The folder holds originals with
# their identifiers for the length of a request: in production, put it on an encrypted volume.
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "platform_core.upload_handlers.UnnamedTemporaryFileUploadHandler",
]
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env.str("VISUS_UPLOAD_TEMP_DIR", "") or None

# Inference workers: jobs per batch, how long a claimed job is held before another worker may take it
# over, and a fault-injection delay used only by the worker-kill test.
VISUS_INFERENCE_BATCH_SIZE = env.int("VISUS_INFERENCE_BATCH_SIZE", 8)
VISUS_INFERENCE_LEASE_SECONDS = env.int("VISUS_INFERENCE_LEASE_SECONDS", 900)
VISUS_INFERENCE_SLOWDOWN_SECONDS = env.int("VISUS_INFERENCE_SLOWDOWN_SECONDS", 0)
# The outbox of inference jobs (diagnosis.services.inference_redispatch, run by beat every
# VISUS_INFERENCE_REDISPATCH_EVERY_SECONDS): a queued job whose message the broker did not take after the commit is
# sent once it has waited this long, and a queued job whose message was sent this long ago is sent again (a broker
# restarted without its data loses messages). A job runs at most once however many messages it gets.
VISUS_INFERENCE_REDISPATCH_EVERY_SECONDS = env.int("VISUS_INFERENCE_REDISPATCH_EVERY_SECONDS", 120)
VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS = env.int("VISUS_INFERENCE_REDISPATCH_UNSENT_SECONDS", 60)
VISUS_INFERENCE_RESEND_SECONDS = env.int("VISUS_INFERENCE_RESEND_SECONDS", 3600)
# Objects under cases/ that no row refers to are deleted by beat's daily sweep (trials.file_services.
# orphan_objects_sweep) once they are this old: an upload in progress writes its objects before its rows commit.
VISUS_ORPHAN_GRACE_SECONDS = env.int("VISUS_ORPHAN_GRACE_SECONDS", 6 * 3600)
# The analysis dashboard (evaluation.snapshots): a trial with at most this many reads (drafts included) has its
# analyses computed in the request when its data changed; a larger one gets them from a Celery task, the page showing
# the last ones meanwhile, marked with their time.
VISUS_DASHBOARD_INLINE_READS = env.int("VISUS_DASHBOARD_INLINE_READS", 20_000)
# After a failed refresh of a large trial's analyses, none is queued again for this long (the page says when):
# a failure that repeats (out of memory, say) is not computed again on every visit.
VISUS_DASHBOARD_RETRY_SECONDS = env.int("VISUS_DASHBOARD_RETRY_SECONDS", 600)

S3_BUCKET = env.str("AWS_STORAGE_BUCKET_NAME", required=True)
if S3_BUCKET:
    from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

    # Objects go up in 5 MiB parts (S3's smallest), two at a time and at most three in memory (15 MiB): by default
    # boto3 keeps up to 15 parts of 8 MiB (120 MiB) of a file object in memory, more than a whole request may use.
    _transfer_config = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024, max_concurrency=2
    )
    _transfer_config.max_in_memory_upload_chunks = 2
    _transfer_config.max_submission_concurrency = 1
    _s3_options = {
        "bucket_name": S3_BUCKET,
        "access_key": env.str("AWS_ACCESS_KEY_ID", required=True),
        "secret_key": env.str("AWS_SECRET_ACCESS_KEY", required=True),
        "endpoint_url": env.str("AWS_S3_ENDPOINT_URL") or None,
        "region_name": env.str("AWS_S3_REGION_NAME", "us-east-1"),
        "addressing_style": env.str("AWS_S3_ADDRESSING_STYLE", "path"),
        "signature_version": "s3v4",
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": VISUS_PRESIGNED_URL_SECONDS,
        "file_overwrite": False,
        "location": env.str("AWS_LOCATION", ""),
        "transfer_config": _transfer_config,
    }
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": _s3_options}
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None, "file_permissions_mode": 0o600},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Files in S3 are served by presigned redirects: the browser loads them from the S3 origin, which the
# Content-Security-Policy must name for images (and for the viewer's fetches), or every preview is blocked.
if S3_BUCKET:
    from urllib.parse import urlsplit

    _endpoint = urlsplit(str(_s3_options["endpoint_url"] or f"https://s3.{_s3_options['region_name']}.amazonaws.com"))
    _s3_origins = [f"{_endpoint.scheme}://{_endpoint.netloc}", f"{_endpoint.scheme}://{S3_BUCKET}.{_endpoint.netloc}"]
    for _directive in ("img-src", "connect-src"):
        CONTENT_SECURITY_POLICY["DIRECTIVES"][_directive] = [
            *CONTENT_SECURITY_POLICY["DIRECTIVES"][_directive],
            *_s3_origins,
        ]

# The audit trail's signed anchors (heads written outside the database, daily): object storage in production
# (the case bucket, under audit-anchors/; give the database's operators no write access there), the data folder
# on a laptop.
if PRODUCTION:
    STORAGES["audit_anchors"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**_s3_options, "location": env.str("VISUS_AUDIT_ANCHOR_LOCATION", "audit-anchors")},
    }
else:
    STORAGES["audit_anchors"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": DATA_DIR / "audit-anchors", "base_url": None, "file_permissions_mode": 0o600},
    }

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", required=True) or "visusfs://"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND")
if CELERY_BROKER_URL.startswith("visusfs://"):
    # Embedded broker: kombu's filesystem transport, publishing through an atomic rename.
    _broker_dir = DATA_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "control_folder": str(_broker_dir / "control"),
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    if not CELERY_RESULT_BACKEND:
        (DATA_DIR / "results").mkdir(parents=True, exist_ok=True)
        CELERY_RESULT_BACKEND = f"file://{DATA_DIR / 'results'}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis redelivers an unacknowledged task after this; longer than the longest task.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
    if not CELERY_RESULT_BACKEND and CELERY_BROKER_URL.startswith("redis"):
        CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery beat (the embedded worker runs it with -B; production runs deploy/systemd/visus-beat.service).
CELERY_BEAT_SCHEDULE = {
    "audit-anchor-daily": {
        "task": "platform_core.audit.tasks.audit_anchor_daily",
        "schedule": env.int("VISUS_AUDIT_ANCHOR_SECONDS", 24 * 3600),
    },
    "inference-redispatch": {
        "task": "diagnosis.tasks.inference_redispatch_task",
        "schedule": VISUS_INFERENCE_REDISPATCH_EVERY_SECONDS,
    },
    "orphan-objects-sweep": {
        "task": "trials.tasks.orphan_objects_sweep_task",
        "schedule": env.int("VISUS_ORPHAN_SWEEP_SECONDS", 24 * 3600),
    },
}
CELERY_RESULT_EXPIRES = 24 * 3600

# --- Cache (sign-in throttles, DRF throttles) -------------------------------------------------------
# Shared across processes in production (Redis: CACHE_URL, else the Redis broker), so that limits hold for
# every gunicorn worker; the embedded mode keeps one per process.
CACHE_URL = env.str("CACHE_URL") or (CELERY_BROKER_URL if PRODUCTION and CELERY_BROKER_URL.startswith("redis") else "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- REST API -------------------------------------------------------------------------------------
# API tokens end after VISUS_IDLE_TIMEOUT_MINUTES unused (as sessions do) and at the latest this long after issue.
VISUS_API_TOKEN_MAX_AGE_HOURS = env.int("VISUS_API_TOKEN_MAX_AGE_HOURS", 12)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that an unauthenticated call gets 401 with a WWW-Authenticate header.
        "platform_core.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Throttle counts live in the default cache: per process in the embedded mode (LocMemCache); production with
    # several processes should configure a shared cache (Redis) so the limits hold across them.
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("VISUS_THROTTLE_ANON", "60/minute"),
        "user": env.str("VISUS_THROTTLE_USER", "1000/minute"),
        "auth_token": env.str("VISUS_THROTTLE_AUTH_TOKEN", "10/minute"),
    },
    # Proxies in front of the app that append to X-Forwarded-For (deploy/README.md: one TLS proxy in production).
    # 0 uses the connection's address; without a number DRF would trust a client-supplied X-Forwarded-For.
    "NUM_PROXIES": env.int("VISUS_NUM_PROXIES", 1 if PRODUCTION else 0),
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "platform_core.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "platform_core.api.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Visus API",
    "DESCRIPTION": "Clinical trials of AI eye diagnosis: trials, sites, subjects, cases, files, models, predictions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # The error envelope (platform_core.api.exceptions) as every operation's 4xx response.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "platform_core.api.docs.error_envelope_hook",
    ],
    "ENUM_NAME_OVERRIDES": {
        "TrialStatusEnum": "trials.models.TrialStatus",
        "SiteStatusEnum": "trials.models.SiteStatus",
        "SubjectStatusEnum": "trials.models.SubjectStatus",
        "CaseStatusEnum": "trials.models.CaseStatus",
        "ModalityEnum": "trials.models.Modality",
        "LesionKindEnum": "reading.models.MarkKind",
        "ReadingPhaseEnum": "reading.models.Phase",
        "FileStatusEnum": "trials.models.FileStatus",
        "DataQueryStatusEnum": "trials.models.DataQueryStatus",
        "ReadStatusEnum": "reading.models.ReadStatus",
        "AdjudicationStatusEnum": "reading.models.AdjudicationStatus",
        "ModelStatusEnum": "diagnosis.models.ModelStatus",
        "JobStatusEnum": "diagnosis.models.JobStatus",
    },
}

# --- Security -----------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "filters": {
        "client_errors_without_traceback": {"()": "platform_core.log_filters.ClientErrorsWithoutTraceback"},
        "redact_invitation_tokens": {"()": "platform_core.log_filters.RedactInvitationTokens"},
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # A 403 or 404 is one line, not a traceback a signed-in user could flood the logs with.
        "django.request": {"filters": ["client_errors_without_traceback", "redact_invitation_tokens"]},
        "django.server": {"filters": ["redact_invitation_tokens"]},
        # Django's default also mails ADMINS a report of every failed request, with each frame's local variables:
        # an upload's bytes (PHI before de-identification) among them. Failures are logged here, never mailed.
        "django": {"handlers": [], "level": "INFO"},
        "django.db.backends": {"level": "WARNING"},
        # Decoders log metadata values (TIFF tags, PNG chunks) at DEBUG: they would carry identifiers.
        "PIL": {"level": "WARNING"},
        "pydicom": {"level": "WARNING"},
    },
}

try:
    env.check()
except MissingSetting as exc:
    raise ImproperlyConfigured(str(exc)) from None
if PRODUCTION:
    _refusals = production_refusals(secret_key=SECRET_KEY, audit_key=AUDIT_CHAIN_KEY, allowed_hosts=ALLOWED_HOSTS)
    if _refusals:
        raise ImproperlyConfigured("Visus refuses to start in production: " + " ".join(_refusals))
