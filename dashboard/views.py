"""Dashboard pages: server-rendered shells; the live numbers arrive over /ws/* and the API."""

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from liveguard.models import GuardLimits


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
