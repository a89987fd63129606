"""Django project for the Stripe Invoicing worker.

The Celery app is imported here so that ``shared_task`` binds to it whenever Django starts
(Celery's ``examples/django`` layout).
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
