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
