import hmac

from django.conf import settings
from rest_framework.permissions import BasePermission


class ReadAccess(BasePermission):
    """Open reads, unless API_READ_TOKEN is set: then that bearer token or a logged-in user."""

    message = "a valid read token is required (Authorization: Bearer <token>)"

    def has_permission(self, request, view):
        token = settings.API_READ_TOKEN
        if not token or (request.user and request.user.is_authenticated):
            return True
        header = request.META.get("HTTP_AUTHORIZATION", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not given:
            return False
        if hmac.compare_digest(given, token):
            return True
        from rest_framework.authtoken.models import Token  # a user's own token, as a bearer token

        return Token.objects.filter(key=given, user__is_active=True).exists()
