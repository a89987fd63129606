"""Celery tasks. Each loads its row by primary key and calls one service."""
