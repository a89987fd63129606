from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Celery tasks: thin wrappers that load rows by primary key and call one service."""

    name = "workers"
    verbose_name = "Workers"

    def ready(self) -> None:
        from invoicing import background
        from workers.jobs import queue_job

        background.install(queue_job)
