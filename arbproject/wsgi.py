"""WSGI entry point (the ASGI app serves HTTP through it)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "arbproject.settings")
application = get_wsgi_application()
