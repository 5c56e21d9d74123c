"""Settings for LightSource. Every value comes from an environment variable.

The defaults run the one-command demo on a laptop: SQLite, media under ./media,
no Redis. The README lists each variable with its default and meaning.
"""

from datetime import timedelta
from pathlib import Path

import dj_database_url

from lightsource.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = env_str("SECRET_KEY", "insecure-dev-key-set-SECRET_KEY-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    # Listed as an app only so that Django loads its translations.
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "django_htmx",
    "accounts",
    "providers",
    "billing",
    "assets",
    "generation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user's language preference overrides Accept-Language.
    "accounts.language.PreferredLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Renders RATELIMIT_VIEW for page views that a rate limit blocked.
    "django_ratelimit.middleware.RatelimitMiddleware",
]

ROOT_URLCONF = "lightsource.urls"
WSGI_APPLICATION = "lightsource.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "generation:generator"
LOGOUT_REDIRECT_URL = "accounts:login"

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
                "billing.context_processors.wallet",
            ],
        },
    },
]

# Database: a SQLite file unless DATABASE_URL is set.
DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    # WAL lets the web server read while the worker writes; IMMEDIATE
    # transactions take the write lock up front, so a busy database makes the
    # other process wait up to the timeout instead of failing with "locked".
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA busy_timeout=20000;"
                ),
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when REDIS_URL is set; rate-limit counters live there.
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "lightsource"),
        }
    }
else:
    # One web process and no Redis: the demo's counters may live in memory.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

RATELIMIT_ENABLE = env_bool("RATELIMIT_ENABLE", True)
RATE_LIMIT_PER_MINUTE = env_int("RATE_LIMIT_PER_MINUTE", 60, minimum=1)
BURST_LIMIT = env_int("BURST_LIMIT", 10, minimum=1)
RATELIMIT_VIEW = "lightsource.views.rate_limited"

_PASSWORD_CHECKS = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_PASSWORD_CHECKS}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_PASSWORD_CHECKS}.MinimumLengthValidator"},
    {"NAME": f"{_PASSWORD_CHECKS}.CommonPasswordValidator"},
    {"NAME": f"{_PASSWORD_CHECKS}.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGE_BASE = Path(env_str("STORAGE_BASE", str(BASE_DIR / "media")))
MEDIA_ROOT = STORAGE_BASE
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Signed links to private media stay valid this long.
MEDIA_LINK_SECONDS = env_int("MEDIA_LINK_SECONDS", 3600, minimum=1)
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1)
MAX_RESULT_BYTES = env_int("MAX_RESULT_BYTES", 200 * 1024 * 1024, minimum=1)

CORS_ALLOWED_ORIGINS = env_list("CORS_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.JWTAuthentication",
        "accounts.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "lightsource.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "lightsource.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "lightsource.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "SIGNING_KEY": env_str("JWT_SECRET", SECRET_KEY),
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 30, 1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(
        minutes=env_int("JWT_REFRESH_MINUTES", 60 * 24 * 7, 1)
    ),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": True,
    # Each refresh returns a new refresh token and revokes the old one, so a
    # leaked refresh token stops working once its owner refreshes or logs out.
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

# Money: integers in the minor unit (1/100 of CURRENCY).
CURRENCY = env_str("CURRENCY", "CNY")

# Worker timings. Tests shorten them; production keeps vendor-sized values.
WORKER_POLL_SECONDS = env_float("WORKER_POLL_SECONDS", 1.0)
# With LISTEN/NOTIFY on PostgreSQL, an idle worker looks this rarely, but at
# least once per WORKER_HEARTBEAT_SECONDS, when it writes its heartbeat.
WORKER_IDLE_POLL_SECONDS = env_float("WORKER_IDLE_POLL_SECONDS", 5.0)
# Jobs in flight per queue in one process: threads waiting on vendors.
WORKER_CONCURRENCY = env_int("WORKER_CONCURRENCY", 32, minimum=1)
# Threads, and so database connections, that do every query of a worker.
WORKER_DB_THREADS = env_int("WORKER_DB_THREADS", 2, minimum=1)
WORKER_HEARTBEAT_SECONDS = env_float("WORKER_HEARTBEAT_SECONDS", 5.0)
WORKER_CANCEL_CHECK_SECONDS = env_float("WORKER_CANCEL_CHECK_SECONDS", 0.5)
WORKER_GRACE_SECONDS = env_float("WORKER_GRACE_SECONDS", 30.0)
# Jobs one user, or one provider account, may have running at once across all
# workers; 0 means no limit.
USER_MAX_IN_FLIGHT = env_int("USER_MAX_IN_FLIGHT", 10, minimum=0)
PROVIDER_MAX_IN_FLIGHT = env_int("PROVIDER_MAX_IN_FLIGHT", 0, minimum=0)
# A killed worker's jobs run again elsewhere once their lease expires; live
# workers renew leases every third of this.
WORKER_LEASE_SECONDS = env_int("WORKER_LEASE_SECONDS", 20, minimum=1)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1)
RETRY_BASE_SECONDS = env_float("RETRY_BASE_SECONDS", 5.0)
RETRY_MAX_SECONDS = env_float("RETRY_MAX_SECONDS", 300.0)
# Vendor HTTP timings, in seconds. The Sora gateway sends progress only every
# 30 s, so its read timeout stays well above that.
VENDOR_CONNECT_TIMEOUT = env_float("VENDOR_CONNECT_TIMEOUT", 10.0)
VENDOR_READ_TIMEOUT = env_float("VENDOR_READ_TIMEOUT", 60.0)
SORA_READ_TIMEOUT = env_float("SORA_READ_TIMEOUT", 120.0)
MODELSCOPE_POLL_SECONDS = env_float("MODELSCOPE_POLL_SECONDS", 5.0)
MODELSCOPE_POLL_MAX_SECONDS = env_float("MODELSCOPE_POLL_MAX_SECONDS", 15.0)
OPENAI_VIDEOS_POLL_SECONDS = env_float("OPENAI_VIDEOS_POLL_SECONDS", 5.0)
OPENAI_IMAGES_TIMEOUT = env_float("OPENAI_IMAGES_TIMEOUT", 600.0)
DOWNLOAD_CONNECT_TIMEOUT = env_float("DOWNLOAD_CONNECT_TIMEOUT", 10.0)
DOWNLOAD_READ_TIMEOUT = env_float("DOWNLOAD_READ_TIMEOUT", 60.0)
# The whole of one result download, however steadily its bytes arrive.
DOWNLOAD_TOTAL_TIMEOUT = env_float("DOWNLOAD_TOTAL_TIMEOUT", 600.0)
MAX_REFERENCE_BYTES = env_int("MAX_REFERENCE_BYTES", 20 * 1024 * 1024, minimum=1)
# Adapters added by deployment, as "kind=dotted.path,...", e.g. for benchmarks.
EXTRA_ADAPTERS = dict(
    item.split("=", 1) for item in env_list("EXTRA_ADAPTERS", []) if "=" in item
)
# Extra seconds the offline renderer spends per job, so demos show progress.
LOCAL_RENDER_DELAY_SECONDS = env_float("LOCAL_RENDER_DELAY_SECONDS", 3.0)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
