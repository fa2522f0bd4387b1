"""Celery tasks: thin wrappers over training services."""

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from . import registry, runs, services


@shared_task(bind=True, name="training.fine_tune", acks_late=True, max_retries=None)
def fine_tune_task(self, run_id: int):
    try:
        services.training_run_execute(run_id=run_id)
    except runs.TrainingBusy as busy:
        raise self.retry(countdown=1, exc=busy) from None


@shared_task(name="training.sweep", ignore_result=True)
def sweep_task():
    return runs.training_runs_sweep()


@shared_task(name="training.warm_up", ignore_result=True)
def warm_up_task():
    return services.training_warm_up()


@shared_task(name="training.prune_versions", ignore_result=True)
def prune_versions_task():
    return len(registry.versions_prune(keep=settings.PRUNE_KEEP_VERSIONS))


@worker_ready.connect
def sweep_at_start(**kwargs):
    """A restarted worker warms up its training process (a task, so it runs where runs
    run) and picks up what its predecessor left behind."""
    warm_up_task.apply_async(retry=False)
    runs.training_runs_sweep()
