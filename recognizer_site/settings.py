"""Settings for the handwriting recognizer, read from the environment.

Every value has a default that works on one machine with no setup (SQLite under
``var/``, the embedded Redis that ``make run`` starts); production overrides them
through environment variables documented in the README.
"""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # the default SQLite file and caches live here
# Off unless set: `make run` and the tests turn it on for the local server.
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-never-use-in-production"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "training",
    "recognition",
    "writers",
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
]

ROOT_URLCONF = "recognizer_site.urls"
WSGI_APPLICATION = "recognizer_site.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Keep each process's connection between requests: opening and closing one (with
# SQLite's pragmas and its checkpoint on close) cost more than the prediction's
# own inserts. Health checks replace a connection the server dropped.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the Celery worker share one SQLite file: WAL lets readers
    # run beside a writer, IMMEDIATE takes the write lock up front (no upgrade
    # deadlocks), and the timeout waits for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not memory, so that a Celery worker started by the tests sees it;
    # one per test run, so that two runs on one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The site's queries read few rows through indexes, but a plan over a million-row
    # table passes jit_above_cost, and compiling it took seconds (the replay's 144 windows).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "recognizer_site.storage.AtomicFileSystemStorage"},
    # Drawings are written on every prediction; model weights keep the fsync.
    "drawings": {
        "BACKEND": "recognizer_site.storage.AtomicFileSystemStorage",
        "OPTIONS": {"durable": False},
    },
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
LOGIN_URL = "admin:login"
# In development whitenoise serves straight from static/; production serves collectstatic output.
WHITENOISE_USE_FINDERS = DEBUG

REDIS_URL = env("REDIS_URL", default=f"redis://127.0.0.1:{env('REDIS_PORT', default='6379')}/0")
# Shared by every process (DRF throttles count here); short timeouts because the
# prediction path must keep working while Redis is down.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": "recognizer",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # The ONNX exporter (manage.py export_model) logs each optimizer pass at INFO.
    "loggers": {name: {"level": "WARNING"} for name in ("onnxscript", "onnx_ir")},
}

# Prometheus scrapes of /metrics: this bearer token; unset, loopback only and only with DEBUG.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# Whose corrections train the shared model: "trusted" (moderators, staff, the
# "Trusted writers" group) or "everyone" (a private, single-user install).
LEARN_FROM = env("LEARN_FROM", default="trusted")
if LEARN_FROM not in ("trusted", "everyone"):
    raise ImproperlyConfigured("LEARN_FROM must be 'trusted' or 'everyone'.")

# --- REST API -------------------------------------------------------------
THROTTLE_ANON = env("THROTTLE_ANON", default="120/min")
THROTTLE_USER = env("THROTTLE_USER", default="600/min")
# Per client, on top of the above: each correction may queue a fine-tune.
THROTTLE_CORRECTIONS = env("THROTTLE_CORRECTIONS", default="20/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "recognizer_site.paginators.EstimatedCountPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": [
        "recognition.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "recognition.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "anon": None if THROTTLE_ANON == "off" else THROTTLE_ANON,
        "user": None if THROTTLE_USER == "off" else THROTTLE_USER,
        "corrections": None if THROTTLE_CORRECTIONS == "off" else THROTTLE_CORRECTIONS,
    },
    # Proxies in front of gunicorn that append to X-Forwarded-For; 0 keys throttles
    # on the socket's address, so a client cannot pick its own key.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Handwriting recognizer API",
    "DESCRIPTION": "Draw a digit or a lowercase letter, get the model's guess, correct it.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SampleSourceEnum": "recognition.models.Sample.Source",
        "SampleStatusEnum": "recognition.models.Sample.Status",
        "CorrectionSourceEnum": "recognition.models.Correction.Source",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
        "TrainingRunStatusEnum": "training.models.TrainingRun.Status",
    },
}
# Uploads: the API checks the image size itself (multipart files bypass this limit),
# and a multipart upload is cut off while streaming once it passes it.
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=2 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "recognition.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A drawing canvas is well under a megapixel; larger images are refused.
MAX_IMAGE_PIXELS = env.int("MAX_IMAGE_PIXELS", default=4_000_000)
# Base64 JSON bodies are a third larger than the image they carry.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024

# --- Models and training --------------------------------------------------
# How often a web process checks which model version is active (seconds).
MODEL_RELOAD_INTERVAL = env.float("MODEL_RELOAD_INTERVAL", default=1.0)
DEFAULT_MODEL_DIR = Path(
    env("DEFAULT_MODEL_DIR", default=str(BASE_DIR / "training" / "default_model"))
)
TORCH_THREADS = env.int("TORCH_THREADS", default=1)

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # An unacknowledged task returns after this; it must exceed the longest fine-tune.
    "visibility_timeout": 3600,
    # Fail fast when Redis is down: a correction is saved anyway and the sweep sends it.
    "max_retries": 0,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "celery"
# Fine-tunes go to their own queue, served by one process per worker.
CELERY_TASK_ROUTES = {
    "training.fine_tune": {"queue": "training"},
    "training.warm_up": {"queue": "training"},
}
CELERY_BEAT_SCHEDULE = {
    "training-sweep": {
        "task": "training.sweep",
        "schedule": env.float("TRAINING_SWEEP_INTERVAL", default=10.0),
    },
    "prune-versions": {
        "task": "training.prune_versions",
        "schedule": env.float("PRUNE_VERSIONS_INTERVAL", default=3600.0),
    },
    # Expired browser sessions, and the personal models of ended ones (writers/services.py).
    "expire-sessions": {
        "task": "writers.expire_sessions",
        "schedule": env.float("SESSION_EXPIRY_INTERVAL", default=3600.0),
    },
}
# Model versions whose weights files pruning keeps whatever their status (the newest);
# older retired and rejected ones lose their files (see `manage.py prune_versions`).
PRUNE_KEEP_VERSIONS = env.int("PRUNE_KEEP_VERSIONS", default=200)

# --- Online learning (training/services/, training/runs.py) -------------
# Operator knobs only; how a fine-tune trains is FineTuneConfig's (training/finetune.py).
FINE_TUNE = {
    # Unset: FineTuneConfig's steps and time budget.
    "STEPS": env.int("FINE_TUNE_STEPS", default=None),
    "MAX_SECONDS": env.float("FINE_TUNE_MAX_SECONDS", default=None),
    "THREADS": env.int("FINE_TUNE_THREADS", default=2),
    # Unset: FineTuneConfig's trainable part ("last"); "head", "all" train and store more.
    "SCOPE": env.str("FINE_TUNE_SCOPE", default=None),
    # Candidates (from different seeds) a run may try before the gate's "no" stands.
    "ATTEMPTS": env.int("FINE_TUNE_ATTEMPTS", default=2),
    # Gate: the largest accuracy drop on the fixed evaluation set we publish ...
    "MAX_FORGETTING": env.float("FINE_TUNE_MAX_FORGETTING", default=0.01),
    # ... and the largest total drop, below the pretrained version, on its held-out slice.
    "MAX_TOTAL_FORGETTING": env.float("FINE_TUNE_MAX_TOTAL_FORGETTING", default=0.005),
    # One user sample in this many (by a keyed hash) is never replayed; those of them
    # that no fine-tune has trained on are evaluated on. Changing it reshuffles that share.
    "HELDOUT_EVERY": env.int("FINE_TUNE_HELDOUT_EVERY", default=5),
    # The most corrections one run takes; the rest wait for the next run.
    "MAX_CORRECTIONS": env.int("FINE_TUNE_MAX_CORRECTIONS", default=500),
    # A running run with no heartbeat for this long lost its worker.
    "STALE_SECONDS": env.float("FINE_TUNE_STALE_SECONDS", default=30.0),
}

# --- Production hardening (DEBUG=0; `manage.py check --deploy` is clean) ----
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
