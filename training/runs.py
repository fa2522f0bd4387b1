"""A training run's life cycle: request, dispatch, claim, heartbeat, finish, sweep.

A correction that teaches something calls ``training_run_request``, which returns
the one queued run (creating it and sending its task after the transaction
commits). A worker claims it with a conditional UPDATE (the database allows one
running run, so the version chain stays linear), and the run takes every
correction pending at that moment (at most ``FINE_TUNE["MAX_CORRECTIONS"]``);
later ones wait for the next run. Anything
that fails leaves its corrections pending, and ``training_runs_sweep`` (periodic,
and at worker start) re-queues them.

A running run beats its heartbeat between phases and during optimizer steps; one
silent for ``FINE_TUNE["STALE_SECONDS"]`` is failed by the sweep, which frees the
slot for another run on the same corrections. Every write of a running run is
therefore filtered on its status, so that the UPDATE decides and not a read before
it: a run the sweep gave up on settles nothing.
"""

import logging
import time
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from recognition import selectors as recognition_selectors
from recognition import services as recognition_services

from . import selectors
from .models import TrainingRun

logger = logging.getLogger(__name__)

# Runs in a row on the active version that failed before the sweep stops re-queueing.
FAILED_RUNS_BEFORE_PAUSE = 3
# A queued run this old while nothing runs has lost its message (or its worker).
QUEUED_RUN_PATIENCE = timedelta(seconds=5)
# Progress reports between optimizer steps: often enough for the page, few enough writes.
PROGRESS_BEAT_SECONDS = 0.5


class TrainingBusy(Exception):
    """Another run is training; this one must wait its turn."""


def training_run_request() -> TrainingRun:
    """Return the queued run that will take every pending correction, creating it if needed."""
    return _queued_run()[0]


def _queued_run() -> tuple[TrainingRun, bool]:
    """The queued run, and whether this call created it (its task is sent on commit)."""
    # On PostgreSQL our insert can lose to a concurrent request's run, which a worker
    # may claim before we look it up: then no run is queued and we create one after all.
    for _ in range(3):
        run = selectors.run_queued()
        if run is not None:
            return run, False
        try:
            with transaction.atomic():
                run = TrainingRun.objects.create(status=TrainingRun.Status.QUEUED)
        except IntegrityError:
            continue
        transaction.on_commit(partial(training_run_dispatch, run_id=run.pk))
        return run, True
    raise RuntimeError("no queued training run could be found or created")


def training_run_dispatch(*, run_id: int) -> bool:
    """Send the run's task; if the broker is down, leave it queued for the sweep."""
    from .tasks import fine_tune_task

    try:
        result = fine_tune_task.apply_async(args=[run_id], retry=False)
    except Exception as error:  # kombu and redis raise several connection error types
        logger.warning("Could not queue training run %s (the sweep will): %s", run_id, error)
        return False
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        task_id=result.id
    )
    return True


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """Move a queued run to running and give it the pending corrections; None if not queued.

    Raises TrainingBusy while another run holds the single-writer slot.
    """
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                claimed = TrainingRun.objects.filter(
                    pk=run_id, status=TrainingRun.Status.QUEUED
                ).update(
                    status=TrainingRun.Status.RUNNING,
                    attempts=F("attempts") + 1,
                    started_at=now,
                    heartbeat_at=now,
                )
        except IntegrityError:
            raise TrainingBusy(f"another run is training; run {run_id} waits") from None
        if not claimed:
            return None
        run = TrainingRun.objects.get(pk=run_id)
        # The claim may have waited for the previous run to commit: it starts now, after it.
        run.started_at = run.heartbeat_at = timezone.now()
        run.parent_version = selectors.version_active()
        run.save(update_fields=["started_at", "heartbeat_at", "parent_version"])
        recognition_services.corrections_take_pending(
            run=run, limit=settings.FINE_TUNE["MAX_CORRECTIONS"]
        )
    return run


def _update_running(run: TrainingRun, **fields) -> bool:
    """Write ``fields`` to the run's row if it is still running; False once the sweep failed it."""
    running = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING)
    return bool(running.update(**fields))


def training_run_heartbeat(run: TrainingRun, **fields) -> bool:
    """Show the sweep that this run's worker is alive; False once the sweep has failed it."""
    return _update_running(run, heartbeat_at=timezone.now(), **fields)


class ProgressBeat:
    """An ``on_progress`` callback that beats the run's heartbeat with its progress."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.last = 0.0

    def __call__(self, progress: float):
        now = time.monotonic()
        if now - self.last >= PROGRESS_BEAT_SECONDS or progress >= 1.0:
            self.last = now
            training_run_heartbeat(self.run, progress=round(progress, 3))

    def alive(self):
        """A beat without progress: inside a long pass (the trunk's features of many glyphs)."""
        now = time.monotonic()
        if now - self.last >= PROGRESS_BEAT_SECONDS:
            self.last = now
            training_run_heartbeat(self.run)


def training_run_given_up(run: TrainingRun):
    """Log that the sweep failed this run while it ran, and show its row as the sweep left it."""
    logger.warning("Training run %s was failed by the sweep while it ran; it keeps nothing", run.pk)
    run.refresh_from_db()


def training_run_finish(run: TrainingRun, *, status: str, **fields) -> bool:
    """Settle a running run; False if the sweep failed it meanwhile (its row stays so)."""
    fields = {"status": status, "finished_at": timezone.now(), **fields}
    if not _update_running(run, **fields):
        training_run_given_up(run)
        return False
    for name, value in fields.items():
        setattr(run, name, value)
    return True


def training_run_fail(run: TrainingRun, *, error: Exception, kind: str) -> bool:
    """Fail a running run; its corrections stay pending for the sweep to re-queue."""
    return training_run_finish(
        run,
        status=TrainingRun.Status.FAILED,
        failure_kind=kind,
        error=f"{type(error).__name__}: {error}",
    )


def _active_version_keeps_failing() -> bool:
    """Whether the last runs on the active version all failed (and say so).

    Retrying every sweep what fails each time (a weights file that does not load, a
    sample that breaks the fine-tune) only adds a failed run every few seconds; a new
    correction still tries again, and activating another version starts afresh.
    """
    active = selectors.version_active()
    if active is None:  # nothing to fine-tune: each run fails at once, and says why
        return False
    last = selectors.runs_last_finished(parent=active, limit=FAILED_RUNS_BEFORE_PAUSE)
    if len(last) < FAILED_RUNS_BEFORE_PAUSE or any(
        r.status != TrainingRun.Status.FAILED for r in last
    ):
        return False
    if all(r.failure_kind == TrainingRun.FailureKind.UNLOADABLE_WEIGHTS for r in last):
        cause = (
            f"could not load v{active.number}'s weights; "
            "restore its file or activate another version"
        )
    else:
        cause = f"on v{active.number} failed (the last: {last[0].error}); see the worker's log"
    logger.error(
        "Not re-queueing pending corrections: the last %s runs %s",
        FAILED_RUNS_BEFORE_PAUSE,
        cause,
    )
    return True


def training_runs_sweep() -> dict:
    """Fail runs whose worker died, and make sure pending corrections have a run on its way."""
    stale_before = timezone.now() - timedelta(seconds=settings.FINE_TUNE["STALE_SECONDS"])
    failed = TrainingRun.objects.filter(
        status=TrainingRun.Status.RUNNING, heartbeat_at__lt=stale_before
    ).update(
        status=TrainingRun.Status.FAILED,
        finished_at=timezone.now(),
        failure_kind=TrainingRun.FailureKind.WORKER_LOST,
        error="worker lost: no heartbeat; its corrections go to the next run",
    )
    requeued = None
    # A pause only stops new runs: a queued one whose message was lost is still sent.
    # Corrections a running run has taken need no second run: it would find nothing.
    if recognition_selectors.corrections_awaiting_run().exists() and (
        selectors.run_queued() is not None or not _active_version_keeps_failing()
    ):
        run, created = _queued_run()
        if created:
            # Its task is sent when this commits, which records its task_id in the row,
            # not in this copy: checking this copy's task_id would send it twice.
            requeued = run.pk
        elif not run.task_id or (
            not selectors.run_is_running() and timezone.now() - run.created_at > QUEUED_RUN_PATIENCE
        ):
            training_run_dispatch(run_id=run.pk)
            requeued = run.pk
    return {"failed_stale": failed, "dispatched": requeued}
