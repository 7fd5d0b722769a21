"""Dashboard pages: server-rendered shells; the live numbers arrive over /ws/* and the API."""

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from liveguard.models import GuardLimits
from trading.api.permissions import ReadAccess
from trading.collector import StateCollector
from trading.engine import get_state


def _context(request, page: str) -> dict:
    return {
        "page": page,
        "limits": GuardLimits.load(),
        "is_staff": request.user.is_authenticated and request.user.is_staff,
        "read_token": "",  # never handed out: the page reads with its session; token clients use their own tokens
        "live_mode": settings.LIVE_MODE,
    }


def read_required(view):
    """With API_READ_TOKEN set, the pages (limits, the breaker's reason, balances) need a login."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if settings.API_READ_TOKEN and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return view(request, *args, **kwargs)

    return wrapped


@read_required
@ensure_csrf_cookie
def overview(request):
    return render(request, "dashboard/overview.html", _context(request, "overview"))


@read_required
def premium_board(request):
    return render(request, "dashboard/board.html", _context(request, "board"))


@read_required
def activity(request):
    return render(request, "dashboard/activity.html", _context(request, "activity"))


class _ThisProcess:
    """The web process's own instruments, when there is no multiprocess directory to read."""

    def collect(self):
        yield from REGISTRY.collect()


def metrics_registry() -> CollectorRegistry:
    """Every process's instruments (or this one's, without PROMETHEUS_MULTIPROC_DIR) and the shared state."""
    registry = CollectorRegistry()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_ThisProcess())
    registry.register(StateCollector(get_state()))
    return registry


@require_GET
def metrics(request):
    """Prometheus text exposition, behind the API's read check (Prometheus sends the read token as
    `Authorization: Bearer <token>`). A plain view, not DRF's: not part of the OpenAPI schema."""
    if not ReadAccess().has_permission(request, None):
        status = 403 if request.META.get("HTTP_AUTHORIZATION") else 401
        response = HttpResponse(ReadAccess.message, status=status, content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
