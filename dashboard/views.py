"""Dashboard pages: server-rendered shells; the live numbers arrive over /ws/* and the API."""

from django.conf import settings
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


@ensure_csrf_cookie
def overview(request):
    return render(request, "dashboard/overview.html", _context(request, "overview"))


def premium_board(request):
    return render(request, "dashboard/board.html", _context(request, "board"))


def activity(request):
    return render(request, "dashboard/activity.html", _context(request, "activity"))
