"""The Celery app (``celery -A config ...``), laid out as in Celery's ``examples/django``."""

import os

from celery import Celery

from workers import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Redis broker URLs get kombu's Redis transport with the fix for a lost Redis (workers/broker.py).
broker.install()

app = Celery("config")
# Every CELERY_* Django setting configures the app; see config/settings.py for each choice.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
