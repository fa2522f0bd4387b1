"""Celery tasks: thin wrappers over recognition's jobs."""

from celery import shared_task

from . import dashboard


@shared_task(name="recognition.dashboard_refresh", ignore_result=True)
def dashboard_refresh_task():
    dashboard.figures_refresh()
