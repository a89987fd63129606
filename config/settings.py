"""Settings, read from the environment (12-factor).

Every variable is listed with its default in the README's "Configuration" section.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

# Lets ModelAdmin[...] / ModelForm[...] be subscripted at run time, as django-stubs types them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)

_secret_key = env_str("DJANGO_SECRET_KEY", "")
if not _secret_key:
    if not DEBUG:
        raise ImproperlyConfigured("Set DJANGO_SECRET_KEY (or DJANGO_DEBUG=1 for development).")
    _secret_key = "insecure-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = _secret_key
# Old keys stay readable after a rotation: Django's signing and the encrypted Stripe secrets
# (django-fernet-encrypted-fields derives its keys from SECRET_KEY and these fallbacks).
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS", [])
# Salt for the key derivation of encrypted model fields (django-fernet-encrypted-fields).
SALT_KEY = env_list("FIELD_ENCRYPTION_SALT", ["po-invoicing-stripe-secrets"])

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS (secure by default outside DJANGO_DEBUG; `manage.py check --deploy` passes) ---------
# Behind a TLS-terminating proxy: the header it sets and its value, e.g.
# "HTTP_X_FORWARDED_PROTO,https". Only set it when the proxy always sets (or strips) that header.
_proxy_ssl_header = env_list("DJANGO_SECURE_PROXY_SSL_HEADER", [])
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured(
        "DJANGO_SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https."
    )
SECURE_PROXY_SSL_HEADER = (
    (_proxy_ssl_header[0], _proxy_ssl_header[1]) if _proxy_ssl_header else None
)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe plain HTTP; the health check answers them there.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", not DEBUG)

# --- Failed-login lockout (django-axes) ---------------------------------------------------------
# After DJANGO_LOGIN_FAILURE_LIMIT failed logins (or password re-entries on a conference's money
# settings) for one username from one address, that pair waits DJANGO_LOGIN_LOCKOUT_MINUTES.
AXES_ENABLED = env_bool("DJANGO_LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("DJANGO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("DJANGO_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address: REMOTE_ADDR, or behind DJANGO_TRUSTED_PROXY_COUNT proxies the address the
# outermost of them saw (config/proxy.py); never an address the client wrote itself.
TRUSTED_PROXY_COUNT = env_int("DJANGO_TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "config.proxy.client_address"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "axes",
    "invoicing",
    "workers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into its answer (429).
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username and address before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The demo runs web, worker and beat against one SQLite file. WAL lets readers go on while one
    # process writes; IMMEDIATE takes the write lock when a transaction begins, so two writers
    # queue (up to `timeout` seconds) instead of one failing with "database is locked" when it
    # upgrades a read lock. SQLite has no row locks: this whole-database lock is what serializes
    # the ledger there (select_for_update is a no-op on SQLite).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve admin assets from the app directories when collectstatic has not run (demo, tests).
WHITENOISE_USE_FINDERS = True

# --- Stripe -----------------------------------------------------------------------------------
# When set, every per-conference StripeClient talks to this base URL (e.g. the emulator).
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "")
STRIPE_MAX_NETWORK_RETRIES = env_int("STRIPE_MAX_NETWORK_RETRIES", 2, minimum=0)
STRIPE_TIMEOUT_SECONDS = env_float("STRIPE_TIMEOUT_SECONDS", 20.0, minimum=1.0)
# Largest webhook body accepted; Stripe's events are far smaller.
STRIPE_WEBHOOK_MAX_BODY_BYTES = env_int("STRIPE_WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
STRIPE_WEBHOOK_TOLERANCE_SECONDS = env_int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
# How long each web process keeps a conference's webhook secrets (0: read them on every delivery).
# Other processes see a deactivation or a new signing secret within this time.
STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS = env_float(
    "STRIPE_WEBHOOK_CONFERENCE_CACHE_SECONDS", 10.0, minimum=0.0
)

# --- Celery -----------------------------------------------------------------------------------
# Every CELERY_* name configures the app (config/celery.py reads them with namespace="CELERY").
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Results are never read: tasks report through the database rows they change.
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# JSON only, both ways: tasks take primary keys, and unpickling broker data would run code.
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# STARTED states would be written to a result backend nobody reads.
CELERY_TASK_TRACK_STARTED = False

# Ack after the task ran, so a task whose worker dies mid-flight runs again (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
# ...also when a prefork child is killed (OOM, SIGKILL): the parent requeues its message at once.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Reserve one message per process: with late acks the running task is the reservation, so no task
# waits behind a slow Stripe call in one worker while another worker idles.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

# Soft limit raises SoftTimeLimitExceeded inside the task (time to record the error and retry);
# the hard limit kills the child. Only the prefork pool enforces them (solo/threads ignore both).
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300, minimum=2)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT={CELERY_TASK_SOFT_TIME_LIMIT} must be below "
        f"CELERY_TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT}."
    )
# Longest countdown any task may ask for when it retries (tasks use it as retry_backoff_max).
TASK_RETRY_BACKOFF_MAX_SECONDS = env_int("TASK_RETRY_BACKOFF_MAX_SECONDS", 600, minimum=1)
# Redis emulates acks: a message delivered but not acked within the visibility timeout is handed to
# another worker. The clock starts when a worker *reserves* the message, and a countdown/ETA task is
# reserved at once and held until its time, so the timeout must exceed the longest countdown plus
# the hard time limit, or the task runs twice. It is also how long a message reserved by a worker
# that was SIGKILLed (or lost its machine) waits before another worker picks it up.
_visibility_timeout = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
if _visibility_timeout <= TASK_RETRY_BACKOFF_MAX_SECONDS + CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT={_visibility_timeout} must exceed "
        f"TASK_RETRY_BACKOFF_MAX_SECONDS + CELERY_TASK_TIME_LIMIT "
        f"({TASK_RETRY_BACKOFF_MAX_SECONDS} + {CELERY_TASK_TIME_LIMIT}), "
        "or a retried task would be delivered twice."
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _visibility_timeout,
    # A publish to a Redis that vanished without closing the socket fails instead of hanging.
    "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 10.0, minimum=2.0),
    "socket_connect_timeout": env_float("CELERY_BROKER_CONNECT_TIMEOUT", 5.0, minimum=0.1),
}
# A worker started before the broker waits for it instead of exiting (Celery 6 changes the default).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep retrying a lost broker for a while (2 s, 4 s... up to 30 s apart: ~46 min by default), then
# exit so the process supervisor restarts the worker and the outage shows up in its logs.
CELERY_BROKER_CONNECTION_MAX_RETRIES = env_int(
    "CELERY_BROKER_CONNECTION_MAX_RETRIES", 100, minimum=1
)
# When the broker connection drops, a running late-ack task can no longer be acked; cancel it
# rather than let it finish unacknowledged and run a second time once its message is restored.
# Kombu tries to put the message back as the channel closes; after a Redis restart (nothing on
# disk) it is gone, which is why recovery never relies on the broker (inbox rows, beat re-enqueue).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Workers keep Django's LOGGING (and so its secret scrubbing) instead of Celery's own root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Two queues: Stripe-calling tasks go to "stripe" (routing by task name comes with the tasks), so a
# Stripe slowdown or rate limit never starves the bookkeeping tasks on "default".
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = {
    "default": {"exchange": "default", "routing_key": "default"},
    "stripe": {"exchange": "stripe", "routing_key": "stripe"},
}
# Every task that may call Stripe runs on "stripe"; the beat's bookkeeping tasks stay on "default".
CELERY_TASK_ROUTES: dict[str, dict[str, str]] = {
    f"workers.tasks.{name}": {"queue": "stripe"}
    for name in (
        "create_invoice_for_purchase_order",
        "retry_invoice_creation_task",
        "process_stripe_event",
        "sync_purchase_order",
        "sync_conference_invoices",
        "void_purchase_order_invoice",
        "reissue_purchase_order_invoice",
        "cancel_purchase_order_task",
        "refund_purchase_order",
        "reduce_amount_owed",
        "report_off_stripe_payment",
    )
}

# --- The pipeline (workers/tasks.py, invoicing/services/stripe_events.py, reconciliation.py) ------
# Retries of transient failures (Stripe 5xx/429/connection, database hiccups): exponential backoff
# from this base, jittered, capped at TASK_RETRY_BACKOFF_MAX_SECONDS; then the error is recorded.
TASK_RETRY_BACKOFF_BASE_SECONDS = env_float("TASK_RETRY_BACKOFF_BASE_SECONDS", 5.0, minimum=0.0)
TASK_MAX_RETRIES = env_int("TASK_MAX_RETRIES", 10, minimum=0)
# A webhook event is tried this many times (transient failures), then parked as failed (replayable).
STRIPE_EVENT_MAX_ATTEMPTS = env_int("STRIPE_EVENT_MAX_ATTEMPTS", 10, minimum=1)
# A recorded event not processed after this long is put on the queue again by the beat (its message
# may have died with the broker). A worker's claim on an event lasts past the hard time limit.
STRIPE_EVENT_REENQUEUE_AFTER_SECONDS = env_int(
    "STRIPE_EVENT_REENQUEUE_AFTER_SECONDS", 300, minimum=1
)
# A worker's claim on an event (and the reconciliation's lease) must outlast the hard time limit,
# or a second worker could take work the first is still doing; the default margin also absorbs
# clock differences between hosts. An expired claim is how the event of a worker that died (or
# whose task was cancelled when the broker vanished) is taken over, so this is also how long such
# an event waits.
STRIPE_EVENT_CLAIM_SECONDS = env_int(
    "STRIPE_EVENT_CLAIM_SECONDS", CELERY_TASK_TIME_LIMIT + 60, minimum=1
)
if STRIPE_EVENT_CLAIM_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"STRIPE_EVENT_CLAIM_SECONDS={STRIPE_EVENT_CLAIM_SECONDS} must exceed "
        f"CELERY_TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT}."
    )
# The webhook's publisher thread and the admin publish with these timeouts and no retry: a dead
# broker must never hold up a recorded event's answer or turn it into a 5xx (the beat re-enqueues).
WEBHOOK_BROKER_TIMEOUT_SECONDS = env_float("WEBHOOK_BROKER_TIMEOUT_SECONDS", 1.0, minimum=0.05)
# Under a burst of webhooks, each web process's publisher thread lets a batch fill this long before
# it publishes (one message for the batch); an idle process publishes an event at once.
STRIPE_EVENT_PUBLISH_LINGER_SECONDS = env_float(
    "STRIPE_EVENT_PUBLISH_LINGER_SECONDS", 0.02, minimum=0.0
)
# An approved PO without a sent invoice after this long is handed to the creation task again.
INVOICE_CREATION_GRACE_SECONDS = env_int("INVOICE_CREATION_GRACE_SECONDS", 600, minimum=1)
# Reconciliation: how often each conference's open invoices are compared with Stripe, and how far
# the events cursor looks back (events can become listable a little after their timestamp).
RECONCILE_INTERVAL_SECONDS = env_int(
    "RECONCILE_INTERVAL_SECONDS",
    env_int("RECONCILE_INTERVAL_MINUTES", 15, minimum=1) * 60,
    minimum=1,
)
RECONCILE_EVENTS_OVERLAP_SECONDS = env_int("RECONCILE_EVENTS_OVERLAP_SECONDS", 3600, minimum=0)
STRIPE_EVENT_REENQUEUE_INTERVAL_SECONDS = env_int(
    "STRIPE_EVENT_REENQUEUE_INTERVAL_SECONDS", 60, minimum=1
)
INVOICE_RESUME_INTERVAL_SECONDS = env_int("INVOICE_RESUME_INTERVAL_SECONDS", 300, minimum=1)
# Processed and ignored events keep their payload (customer names, emails, addresses) this long,
# then the beat empties it, keeping id, type, status and times. Failed events keep theirs.
STRIPE_EVENT_RETENTION_DAYS = env_int("STRIPE_EVENT_RETENTION_DAYS", 90, minimum=1)

# --- E-mail (Django's mail backend; invoicing/services/notifications.py) --------------------------
# The demo (DJANGO_DEBUG=1) prints e-mails on the console; production sends them over SMTP.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "invoicing@localhost")
# Where the links in the e-mails point: the site's base URL (the admin's paths are appended).
NOTIFICATION_BASE_URL = env_str("NOTIFICATION_BASE_URL", "http://localhost:8000")
# How often the beat looks for invoices newly past due (each is told once).
NOTIFY_OVERDUE_INTERVAL_SECONDS = env_int("NOTIFY_OVERDUE_INTERVAL_SECONDS", 3600, minimum=60)

# django-celery-beat writes these into PeriodicTask rows when beat starts (an interval changed here
# updates its row then). Each run expires after one interval, so a backlog never replays them all.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "sync-open-invoices": {
        "task": "workers.tasks.sync_open_invoices",
        "schedule": float(RECONCILE_INTERVAL_SECONDS),
        "options": {"expire_seconds": RECONCILE_INTERVAL_SECONDS},
    },
    "reenqueue-pending-stripe-events": {
        "task": "workers.tasks.reenqueue_pending_stripe_events",
        "schedule": float(STRIPE_EVENT_REENQUEUE_INTERVAL_SECONDS),
        "options": {"expire_seconds": STRIPE_EVENT_REENQUEUE_INTERVAL_SECONDS},
    },
    "purge-stripe-event-payloads": {
        "task": "workers.tasks.purge_stripe_event_payloads",
        "schedule": 3600.0,
        "options": {"expire_seconds": 3600},
    },
    "notify-overdue-invoices": {
        "task": "workers.tasks.notify_overdue_invoices",
        "schedule": float(NOTIFY_OVERDUE_INTERVAL_SECONDS),
        "options": {"expire_seconds": NOTIFY_OVERDUE_INTERVAL_SECONDS},
    },
    "resend-pending-notifications": {
        "task": "workers.tasks.resend_pending_notifications",
        "schedule": 300.0,
        "options": {"expire_seconds": 300},
    },
    "resume-stalled-invoice-creation": {
        "task": "workers.tasks.resume_stalled_invoice_creation",
        "schedule": float(INVOICE_RESUME_INTERVAL_SECONDS),
        "options": {"expire_seconds": INVOICE_RESUME_INTERVAL_SECONDS},
    },
    "report-pending-off-stripe-payments": {
        "task": "workers.tasks.report_pending_off_stripe_payments",
        "schedule": float(INVOICE_RESUME_INTERVAL_SECONDS),
        "options": {"expire_seconds": INVOICE_RESUME_INTERVAL_SECONDS},
    },
}

# --- Stripe rate limit (invoicing/services/rate_limit.py) ------------------------------------
# One sliding-window log per Stripe account in Redis, shared by every worker: at most R requests
# (rounded down) in any window of 1 s + S, as Stripe counts (25/s in a sandbox, 100/s live). An
# idle account lets R through at once, a busy one sustains R / (1 + S) per second. The slack S is
# for requests that reach Stripe later than their slot (Stripe counts arrivals): with 23 and no
# slack the bulk benchmark got 429s (tests/benchmarks/README.md).
STRIPE_RATE_LIMIT_REDIS_URL = env_str("STRIPE_RATE_LIMIT_REDIS_URL", "redis://127.0.0.1:6379/1")
STRIPE_RATE_LIMIT_TEST_PER_SECOND = env_float(
    "STRIPE_RATE_LIMIT_TEST_PER_SECOND", 24.0, minimum=0.1
)
STRIPE_RATE_LIMIT_LIVE_PER_SECOND = env_float(
    "STRIPE_RATE_LIMIT_LIVE_PER_SECOND", 90.0, minimum=0.1
)
STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS = env_float(
    "STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS", 0.05, minimum=0.0
)
if STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS >= 1:
    raise ImproperlyConfigured("STRIPE_RATE_LIMIT_WINDOW_SLACK_SECONDS must be below 1 s.")
# How long one request may wait for its slot before it fails with a retryable error (the task
# then retries with backoff instead of holding a worker).
STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS = env_float(
    "STRIPE_RATE_LIMIT_MAX_WAIT_SECONDS", 10.0, minimum=0.0
)
# After a 429 every worker pauses that account this long (or longer, if Stripe says so).
STRIPE_RATE_LIMIT_COOLDOWN_SECONDS = env_float(
    "STRIPE_RATE_LIMIT_COOLDOWN_SECONDS", 1.0, minimum=0.0
)

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use 'text' or 'json'.")

# Both formats mask anything shaped like a Stripe secret (invoicing/logging.py): the filter cleans
# the record for every handler, the formatters scrub the finished line once more.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "scrub_secrets": {"()": "invoicing.logging.SecretScrubbingFilter"},
    },
    "formatters": {
        "text": {
            "()": "invoicing.logging.ScrubbingTextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "invoicing.logging.ScrubbingJsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "json_ensure_ascii": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["scrub_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # stripe-python logs every request and response at INFO; our own lines say what happened.
        "stripe": {"level": env_str("STRIPE_LOG_LEVEL", "WARNING").upper()},
        # django-axes logs every login at INFO; lockouts (WARNING) are what matters.
        "axes": {"level": "WARNING"},
    },
}
