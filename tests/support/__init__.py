"""Test infrastructure shared by the suite: real Celery workers, private Redis servers."""
