"""Settings for kimp. Everything that varies between machines comes from the environment."""

import sys
from datetime import timedelta
from pathlib import Path

import environ

from .env import env_bool, env_decimal, env_float, env_int, env_int_list, env_list, env_str
from .logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# A .env file is optional; real environment variables win over it.
_dotenv = BASE_DIR / ".env"
if _dotenv.exists():
    environ.Env.read_env(str(_dotenv), overwrite=False)

DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key is only acceptable in paper mode; a system check refuses it in live mode.
INSECURE_SECRET_KEY = "kimp-paper-mode-insecure-key"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

# --- Behind a TLS proxy (production) --------------------------------------------------------
# Defaults serve `make demo` on plain http://localhost:8001; infra/.env.example's production block
# sets the values a deployment behind HTTPS uses (manage.py check --deploy is clean with them).
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")  # e.g. https://kimp.example.com
if env_bool("TRUST_X_FORWARDED_PROTO", False):  # only behind a proxy that sets it (and strips clients')
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^livez$"]  # the orchestrator's probe, inside the proxy
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The web process refuses (413) a request body above this before buffering it (dashboard/wsgi_bridge.py).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# daphne's app only gives `runserver` an ASGI server, and importing it installs Twisted's reactor
# (~26 MB): the other processes (uvicorn serves the site; Celery, feeds, venue) leave it out.
_RUNSERVER = len(sys.argv) > 1 and sys.argv[1] == "runserver"

INSTALLED_APPS = [
    *(["daphne"] if _RUNSERVER else []),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "marketdata",
    "trading",
    "liveguard",
    "dashboard",
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
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins from one IP address, logins
# from it are refused (429) for AXES_COOLOFF_MINUTES, even with the right password. Behind a proxy
# the client's address is the proxy's unless AXES_IPWARE_PROXY_COUNT says how many proxies to trust.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_IPWARE_PROXY_COUNT = env_int("AXES_IPWARE_PROXY_COUNT", 0, minimum=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
AXES_VERBOSE = False

# Content-Security-Policy (django-csp): scripts only from our own static files (the dashboard has no
# inline script), WebSockets and API calls to our own origin, never framed. Styles allow inline
# attributes (Django admin uses them). The API docs (Swagger UI, Redoc) are drf-spectacular's pages
# with inline start-up scripts, so they are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/docs", "/api/redoc"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "arbproject.urls"
ASGI_APPLICATION = "arbproject.asgi.application"

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
    "default": environ.Env.db_url_config(env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")),
}
# Keep each thread's connection between requests (the API serves from a thread pool).
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web server write concurrently: wait for the lock instead of failing at once.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.setdefault("timeout", 20)
    # WAL lets readers run beside the one writer; NORMAL syncs at checkpoints, not every commit
    # (a power cut can lose the last commits, never corrupt the file). IMMEDIATE takes the write
    # lock at BEGIN, so two writers queue instead of deadlocking on a lock upgrade.
    options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
    options.setdefault("transaction_mode", "IMMEDIATE")
# The tests' scratch database. On SQLite a file, not memory, so that the Celery workers the tests
# start share it; on PostgreSQL a database Django creates and drops. `make test` and the test suite
# name one per run (kimp_test_<pid>_<random>), so two runs on one machine never meet.
_test_db_name = env_str("DATABASE_TEST_NAME", "")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name or str(BASE_DIR / ".run" / "test.sqlite3")}
elif _test_db_name:
    DATABASES["default"]["TEST"] = {"NAME": _test_db_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns at every start when it is missing
# Chart.js comes from npm (`make` runs `npm install`); pages work without it, minus the charts.
STATICFILES_DIRS = [("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist")]
STATICFILES_DIRS = [entry for entry in STATICFILES_DIRS if entry[1].is_dir()]
WHITENOISE_USE_FINDERS = True  # serve straight from the apps and node_modules, no collectstatic step

# --- API ------------------------------------------------------------------------------------
# When set, every read endpoint wants `Authorization: Bearer <token>` (or a logged-in user).
API_READ_TOKEN = env_str("API_READ_TOKEN", "")
API_MAX_LIMIT = env_int("API_MAX_LIMIT", 1000, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "trading.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "kimp API",
    "DESCRIPTION": "Kimchi-premium arbitrage between Upbit (KRW) and Binance (USDT): live state and controls.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "trading.api.schema.add_error_responses",
    ],
}
LOGIN_URL = "/admin/login/"

# --- Redis, Celery, Channels -------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 20, minimum=1)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Off for the evaluate workers only (demo, compose): a batch's message is disposable (its flag lapses and
# the next change queues another), so they skip the broker's unacked bookkeeping, a round trip a batch.
# Every other worker keeps it: a lost pair, flatten or reconcile message would be redelivered.
CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": env_bool("CELERY_ACK_EMULATION", True)}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
# The worker and beat keep LOGGING's handler (its format, masking and context) instead of Celery's own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [env_str("CHANNELS_REDIS_URL", REDIS_URL)]},
    }
}

# --- Trading mode and exchange credentials ----------------------------------------------
# Paper mode (the default) needs no keys. Live mode has no default secrets: see liveguard checks.
LIVE_MODE = env_bool("LIVE_MODE", False)
LIVE_MODE_CONFIRM = env_str("LIVE_MODE_CONFIRM", "")
UPBIT_API_KEY = env_str("UPBIT_API_KEY", "")
UPBIT_SECRET_KEY = env_str("UPBIT_SECRET_KEY", "")
BINANCE_API_KEY = env_str("BINANCE_API_KEY", "")
BINANCE_SECRET_KEY = env_str("BINANCE_SECRET_KEY", "")
# Withdrawals between the venues use keys of their own (with the withdraw permission), never the
# trading keys; without them nothing is ever withdrawn (and TransferLimits.withdrawals_enabled must
# be switched on in admin as well).
UPBIT_WITHDRAW_API_KEY = env_str("UPBIT_WITHDRAW_API_KEY", "")
UPBIT_WITHDRAW_SECRET_KEY = env_str("UPBIT_WITHDRAW_SECRET_KEY", "")
BINANCE_WITHDRAW_API_KEY = env_str("BINANCE_WITHDRAW_API_KEY", "")
BINANCE_WITHDRAW_SECRET_KEY = env_str("BINANCE_WITHDRAW_SECRET_KEY", "")

# Real exchanges by default; the simulated venue in the demo and the tests.
UPBIT_REST_URL = env_str("UPBIT_REST_URL", "https://api.upbit.com")
UPBIT_WS_URL = env_str("UPBIT_WS_URL", "wss://api.upbit.com/websocket/v1")
BINANCE_REST_URL = env_str("BINANCE_REST_URL", "https://api.binance.com")
BINANCE_WS_URL = env_str("BINANCE_WS_URL", "wss://stream.binance.com:9443")

# --- Market data ---------------------------------------------------------------------------
# Base assets to follow; empty means every coin listed on both venues.
FEED_SYMBOLS = env_list("FEED_SYMBOLS", "")
FEED_BOOK_DEPTH = env_int("FEED_BOOK_DEPTH", 20, minimum=1)
FEED_UPBIT_FORMAT = env_str("FEED_UPBIT_FORMAT", "SIMPLE")
FEED_BINANCE_SNAPSHOT_LIMIT = env_int("FEED_BINANCE_SNAPSHOT_LIMIT", 100, minimum=5)
# MICROSECOND asks Binance for event times in µs (timeUnit); empty keeps its default of ms.
FEED_BINANCE_TIME_UNIT = env_str("FEED_BINANCE_TIME_UNIT", "")
FEED_RECONNECT_MAX_BACKOFF = env_float("FEED_RECONNECT_MAX_BACKOFF", 30.0, minimum=0.1)
# Binance closes a connection after 24 h; leave earlier, on our own terms.
FEED_MAX_CONNECTION_AGE = env_float("FEED_MAX_CONNECTION_AGE", 23.5 * 3600, minimum=1.0)
# A tick's hot path (feed threads, evaluate workers) at this SCHED_FIFO priority where the OS allows
# it (marketdata/realtime.py); 0 = the normal scheduler. Each thread keeps a CPU budget: over
# REALTIME_MAX_CPU_SHARE of a core two seconds in a row, it runs at normal priority for a few seconds.
REALTIME_PRIORITY = env_int("REALTIME_PRIORITY", 0, minimum=0)
REALTIME_MAX_CPU_SHARE = env_float("REALTIME_MAX_CPU_SHARE", 0.6, minimum=0.05)
# Where the KRW/USDT rate comes from: "upbit" (the KRW-USDT book) or "fixed" (FX_FIXED_RATE).
FX_SOURCE = env_str("FX_SOURCE", "upbit")
FX_FIXED_RATE = env_decimal("FX_FIXED_RATE", "1380")

# --- Simulated venue -----------------------------------------------------------------------
VENUE_HOST = env_str("VENUE_HOST", "127.0.0.1")
VENUE_UPBIT_PORT = env_int("VENUE_UPBIT_PORT", 8701, minimum=0)
VENUE_BINANCE_PORT = env_int("VENUE_BINANCE_PORT", 8702, minimum=0)
VENUE_SEED = env_int("VENUE_SEED", 7)
VENUE_STEP_HZ = env_float("VENUE_STEP_HZ", 10.0, minimum=0.1)

# --- Fees (taker, as a fraction) -------------------------------------------------------------
UPBIT_TAKER_FEE = env_decimal("UPBIT_TAKER_FEE", "0.0005")
BINANCE_TAKER_FEE = env_decimal("BINANCE_TAKER_FEE", "0.001")

# --- Trading loop ---------------------------------------------------------------------------
# Paper mode's starting funds: quote on each venue, and coins worth this many KRW on each venue.
PAPER_START_KRW = env_decimal("PAPER_START_KRW", "100000000")
PAPER_START_USDT = env_decimal("PAPER_START_USDT", "70000")
PAPER_START_COIN_KRW = env_decimal("PAPER_START_COIN_KRW", "10000000")
# Daily counters (trades, loss) reset at midnight in this zone.
TRADING_DAY_TZ = env_str("TRADING_DAY_TZ", "Asia/Seoul")
# A second USD/KRW source shown beside the KRW-USDT book; empty = none.
FX_REFERENCE_URL = env_str("FX_REFERENCE_URL", "")
SIGNAL_LOCK_MS = env_int("SIGNAL_LOCK_MS", 5000, minimum=100)
# The pair lifecycle (trading/execution.py). Each leg is an IOC limit this fraction beyond the
# expected price; a pair's worker owns it for PAIR_LEASE_S (then resume may take it over); an order
# whose outcome stays unknown this long after the pair began engages the kill switch.
LEG_SLIPPAGE = env_decimal("LEG_SLIPPAGE", "0.003")
PAIR_LEASE_S = env_float("PAIR_LEASE_S", 120.0, minimum=10.0)
LEG_RISK_AFTER_S = env_float("LEG_RISK_AFTER_S", 60.0, minimum=1.0)
# Every signed exchange call gives up after this long (and is then an unknown outcome).
EXCHANGE_TIMEOUT_S = env_float("EXCHANGE_TIMEOUT_S", 5.0, minimum=0.1)
# A reconciliation result older than this no longer keeps live trading open.
RECONCILE_MAX_AGE_S = env_int("RECONCILE_MAX_AGE_S", 180, minimum=10)
# Which FeeSchedule rows (per venue) apply to this deployment's accounts.
FEE_ACCOUNT = env_str("FEE_ACCOUNT", "default")
# The quant size cap (trading/quant): KRW a coin may lose on a one-sigma premium move over the
# horizon at equal weight; the horizon; the floor on a premium's volatility (points).
RISK_BUDGET_KRW = env_decimal("RISK_BUDGET_KRW", "3000")
RISK_HORIZON_SECONDS = env_int("RISK_HORIZON_SECONDS", 3600, minimum=60)
RISK_MIN_PREMIUM_VOL_PP = env_float("RISK_MIN_PREMIUM_VOL_PP", 0.05, minimum=0.0001)
PREMIUM_HISTORY_SECONDS = env_int("PREMIUM_HISTORY_SECONDS", 3600, minimum=60)

# --- Metrics (GET /metrics, Prometheus text exposition) ----------------------------------------
# false turns every process-local instrument (trading/telemetry.py, liveguard/telemetry.py) into a no-op.
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
# The directory where every process (workers, feeds, web) writes its counters and histograms, so that
# /metrics adds them up (prometheus_client's multiprocess mode reads it from the environment when it is
# imported; arbproject/prometheus.py names the files by host and pid). Empty: /metrics shows the web process's own instruments only, never the workers'. Wiped
# before the processes start (make demo, compose's tmpfs): files of an earlier run would count twice.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR:
    from .prometheus import write_values_to

    write_values_to(PROMETHEUS_MULTIPROC_DIR)
# Celery queues whose backlog /metrics reports (LLEN on the broker).
METRICS_CELERY_QUEUES = env_list("METRICS_CELERY_QUEUES", "celery,evaluate,pairs,notify")

# Notifications (liveguard/notify.py): apprise URLs from the environment, beside the channels edited
# in the admin (tgram://, slack://, discord://, mailto://, json:// ...; secrets: never logged).
NOTIFY_URLS = env_list("NOTIFY_URLS", "")
# At most this many notifications per channel and minute; the excess is marked suppressed and
# counted in the channel's next message. Each is tried this many times (with backoff) before failing.
NOTIFY_RATE_PER_MINUTE = env_int("NOTIFY_RATE_PER_MINUTE", 20, minimum=1)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 4, minimum=1)
# The Telegram bot (manage.py run_telegram): staff may engage (never release) the kill switch from
# these chats. The API URL is configurable so tests run against a local fake.
TELEGRAM_BOT_TOKEN = env_str("TELEGRAM_BOT_TOKEN", "")
TELEGRAM_API_URL = env_str("TELEGRAM_API_URL", "https://api.telegram.org")
TELEGRAM_ALLOWED_CHAT_IDS = env_int_list("TELEGRAM_ALLOWED_CHAT_IDS", "")

# One line per meaningful event at INFO (Celery's per-task lines are held back, arbproject/logs.py);
# per-evaluation detail at DEBUG. LOG_FORMAT=json writes JSON lines with coin and pair_id on each.
LOGGING = logging_config(level=env_str("LOG_LEVEL", "INFO"), fmt=env_str("LOG_FORMAT", "text"))
