"""Celery tasks: thin wrappers over writers services."""

from celery import shared_task

from . import services


@shared_task(name="writers.expire_sessions", ignore_result=True)
def expire_sessions_task():
    return services.sessions_expire()
