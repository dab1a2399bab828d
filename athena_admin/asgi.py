"""ASGI entry point for the admin."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "athena_admin.settings")
application = get_asgi_application()
