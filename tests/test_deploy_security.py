"""Deployment behind TLS (issue 11): `manage.py check --deploy` is clean with the production
environment documented in infra/.env.example, and WebSockets from another site's page are refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = {
    "DJANGO_SECRET_KEY": "p" * 30 + "Q9x!kZ" * 5,
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "kimp.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://kimp.example.com",
    "TRUST_X_FORWARDED_PROTO": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
}


def test_the_documented_production_block_is_in_env_example():
    example = (ROOT / "infra" / ".env.example").read_text()
    for name in PRODUCTION:
        assert f"{name}=" in example, name


def test_check_deploy_is_clean_with_the_production_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))}
    env.update(PRODUCTION)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin, accepted", [(b"http://evil.example", False), (b"http://localhost:8001", True),
                                              (None, True)])
def test_websockets_refuse_another_sites_origin(origin, accepted):
    from arbproject.asgi import application

    async def connect():
        headers = [(b"host", b"localhost:8001")] + ([(b"origin", origin)] if origin else [])
        communicator = WebsocketCommunicator(application, "/ws/metrics", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        await communicator.disconnect()
        return connected

    import asyncio

    assert asyncio.run(connect()) is accepted


@pytest.mark.django_db
def test_pages_carry_a_strict_csp_and_no_inline_script(client):
    import re

    for page in ("/", "/board", "/activity"):
        response = client.get(page)
        assert response.status_code == 200, page
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
        html = response.content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"an inline script on {page}"
        assert not re.search(r"\son[a-z]+=", html), f"an inline event handler on {page}"


@pytest.mark.django_db
def test_admin_login_is_throttled_after_repeated_failures(client, settings):
    from django.contrib.auth.models import User

    User.objects.create_superuser("boss", "b@example.com", "right-password-123")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "wrong"})
    assert response.status_code == 429  # the failure that reaches the limit locks the address out
    # locked out now: even the right password is refused from this address
    response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": "right-password-123"})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_admin_login_through_a_tls_proxy_succeeds(client, settings):
    """Behind a TLS proxy the admin login failed with 'Origin checking failed' (no trusted origins)."""
    from django.contrib.auth.models import User
    from django.test import Client

    settings.ALLOWED_HOSTS = ["kimp.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://kimp.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    User.objects.create_superuser("ops2", "o@example.com", "right-password-123")
    browser = Client(enforce_csrf_checks=True, HTTP_HOST="kimp.example.com", HTTP_X_FORWARDED_PROTO="https")
    page = browser.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    response = browser.post("/admin/login/?next=/admin/", {"username": "ops2", "password": "right-password-123",
                                                           "csrfmiddlewaretoken": token, "next": "/admin/"},
                            HTTP_ORIGIN="https://kimp.example.com", HTTP_REFERER="https://kimp.example.com/admin/login/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
