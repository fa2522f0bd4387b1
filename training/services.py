"""Writers of training runs: request, execute, recover.

Life of a run: a correction that teaches something calls ``training_run_request``,
which returns the one queued run (creating it and sending its task after the
transaction commits). When a worker starts the run it claims it with a
conditional UPDATE (the database allows one running run, so the version chain
stays linear) and takes every pending correction at that moment; corrections
arriving later wait for the next run. The run publishes a new version, active
only if it passes the gate. Anything that fails leaves its corrections pending,
and ``training_runs_sweep`` (periodic, and at worker start) re-queues them.

A running run beats its heartbeat between phases and during optimizer steps; one
silent for ``FINE_TUNE_STALE_SECONDS`` is failed by the sweep, which frees the slot
for another run on the same corrections. So a run settles itself, its version and
its corrections only while its row is still running: a run the sweep gave up on
publishes nothing.
"""

import hashlib
import logging
import time
from datetime import timedelta
from functools import partial

import numpy as np
import torch
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from recognition.models import Correction

from . import nn, registry, replay
from .finetune import FineTuneConfig, FrozenTrunk, RootBound, fine_tune, gate
from .models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


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
        run = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED).first()
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


def _claim(*, run_id: int) -> TrainingRun | None:
    """Move a queued run to running and give it the pending corrections, or say why not."""
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
        run.parent_version = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
        run.save(update_fields=["parent_version"])
        run.corrections.set(replay.pending_corrections())
    return run


# Every write of a running run is filtered on its status, so that the UPDATE decides
# and not a read before it: a sweep in between is never overwritten.


def _update_running(run: TrainingRun, **fields) -> bool:
    """Write ``fields`` to the run's row if it is still running; False once the sweep failed it."""
    running = TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING)
    return bool(running.update(**fields))


def _heartbeat(run: TrainingRun, **fields) -> bool:
    """Show the sweep that this run's worker is alive; False once the sweep has failed it."""
    return _update_running(run, heartbeat_at=timezone.now(), **fields)


def _given_up(run: TrainingRun):
    logger.warning("Training run %s was failed by the sweep while it ran; it keeps nothing", run.pk)
    run.refresh_from_db()


def _finish(run: TrainingRun, *, status: str, **fields) -> bool:
    """Settle a running run; False if the sweep failed it meanwhile (its row stays so)."""
    fields = {"status": status, "finished_at": timezone.now(), **fields}
    if not _update_running(run, **fields):
        _given_up(run)
        return False
    for name, value in fields.items():
        setattr(run, name, value)
    return True


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Run one fine-tune to its end. Idempotent: a finished run is left as it is.

    Raises TrainingBusy while another run holds the single-writer slot.
    """
    run = _claim(run_id=run_id)
    if run is None:
        return TrainingRun.objects.filter(pk=run_id).first()
    try:
        _fine_tune_and_publish(run)
    except Exception as error:
        # Its corrections stay pending; the sweep retries them, at its own pace.
        logger.exception("Training run %s failed", run.pk)
        _finish(
            run,
            status=TrainingRun.Status.FAILED,
            error=f"{type(error).__name__}: {error}",
        )
        return run
    if replay.pending_corrections():
        training_run_request()
    return run


# Each version's evaluation on a fixed set, remembered by this worker process: a
# published candidate is the next run's parent, so that run need not score it again.
_fixed_scores: dict[tuple[str, str], dict] = {}
_FIXED_SCORES_KEPT = 8


def _fixed_set_digest(fixed: replay.GlyphSet) -> str:
    return hashlib.sha256(fixed.glyphs.tobytes() + fixed.labels.tobytes()).hexdigest()


def _remember_fixed_score(key: tuple[str, str], score: dict):
    _fixed_scores[key] = score
    while len(_fixed_scores) > _FIXED_SCORES_KEPT:
        del _fixed_scores[next(iter(_fixed_scores))]


# The pretrained root's accuracy on its own evaluation glyphs, by root weights: once per process.
_root_scores: dict[str, float] = {}


def _root_accuracy(version: ModelVersion, anchors: dict, trunk: FrozenTrunk) -> float:
    """Accuracy of the chain's first version (which made these anchors) on their eval glyphs."""
    root = (
        ModelVersion.objects.filter(anchors=version.anchors.name).order_by("number").first()
        or version
    )
    if root.sha256 not in _root_scores:
        model = registry.version_load_model(root)
        _root_scores.clear()
        _root_scores[root.sha256] = trunk.evaluate(
            model, anchors["eval_glyphs"], anchors["eval_labels"]
        )["overall"]
    return _root_scores[root.sha256]


# The active chain's trunk and its remembered features: a chain of head-only
# fine-tunes keeps one trunk, so this process computes each glyph's features once.
_trunks: dict[str, FrozenTrunk] = {}


def _frozen_trunk(model: nn.GlyphNet) -> FrozenTrunk:
    digest = nn.trunk_digest(model)
    if digest not in _trunks:
        _trunks.clear()
        _trunks[digest] = FrozenTrunk(model)
    return _trunks[digest]


def _fine_tune_config(*, seed: int, **overrides) -> FineTuneConfig:
    config = settings.FINE_TUNE
    fields = {
        "steps": config["STEPS"],
        "batch_size": config["BATCH_SIZE"],
        "learning_rate": config["LEARNING_RATE"],
        "optimizer": config["OPTIMIZER"],
        "trainable": config["TRAINABLE"],
        "distill": config["DISTILL"],
        "new_fraction": config["NEW_FRACTION"],
        "max_seconds": config["MAX_SECONDS"],
    }
    return FineTuneConfig(**{**fields, **overrides}, seed=seed)


def training_warm_up() -> int:
    """Compute what every run of the active chain needs, so a worker's first run is as quick
    as the rest: its trunk's features of the anchor and evaluation glyphs, the root's score,
    and a throwaway two-step fine-tune (a process's first one pays about 3 s to set up
    autograd, the optimizer and the kernels).

    Returns how many glyphs' features this process now remembers.
    """
    version = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
    if version is None:
        return 0
    torch.set_num_threads(settings.FINE_TUNE["THREADS"])
    anchors = registry.version_load_anchors(version)
    model = registry.version_load_model(version)
    trunk = _frozen_trunk(model)
    glyphs, labels = anchors["anchor_glyphs"], anchors["anchor_labels"]
    trunk.features(np.concatenate([glyphs, anchors["eval_glyphs"]]))
    _root_accuracy(version, anchors, trunk)
    fine_tune(
        model,
        new_glyphs=glyphs[:1],
        new_labels=labels[:1],
        replay_glyphs=glyphs,
        replay_labels=labels,
        config=_fine_tune_config(seed=0, steps=2),
        trunk=trunk,
    )
    return len(trunk)


def _fine_tune_and_publish(run: TrainingRun):
    config = settings.FINE_TUNE
    corrections = list(run.corrections.all())
    parent_version = run.parent_version
    if parent_version is None:
        raise RuntimeError("no active model version to fine-tune")
    new = replay.new_corrections_set(corrections)
    if not corrections or not len(new):
        with transaction.atomic():
            if _finish(run, status=TrainingRun.Status.REJECTED, reason="nothing left to learn"):
                Correction.objects.filter(pk__in=[c.pk for c in corrections]).update(
                    training_state=Correction.TrainingState.REJECTED
                )
        return

    started = time.monotonic()
    torch.set_num_threads(config["THREADS"])
    parent = registry.version_load_model(parent_version)
    anchors = registry.version_load_anchors(parent_version)
    anchor_set = replay.GlyphSet(anchors["anchor_glyphs"], anchors["anchor_labels"])
    user_replay = replay.replay_set(
        exclude_ids=new.sample_ids,
        per_class=config["REPLAY_PER_CLASS"],
        every=config["HELDOUT_EVERY"],
        seed=config["SEED"] + run.pk,
    )
    heldout = replay.heldout_user_set(
        exclude_ids=new.sample_ids,
        every=config["HELDOUT_EVERY"],
        limit=config["HELDOUT_LIMIT"],
    )
    fixed = replay.GlyphSet(anchors["eval_glyphs"], anchors["eval_labels"]) + heldout
    replay_pool = anchor_set + user_replay
    # Steps beat on their own; loading, scoring and gating do not, and on a busy
    # machine or a cold worker each may take a while: a beat after every phase
    # keeps the sweep's silence measured per phase instead of across them.
    _heartbeat(run)

    last_beat = [0.0]

    def heartbeat(progress: float):
        now = time.monotonic()
        if now - last_beat[0] >= 0.5 or progress >= 1.0:
            last_beat[0] = now
            _heartbeat(run, progress=round(progress, 3))

    trunk = _frozen_trunk(parent)
    computed_before = trunk.computed
    fixed_digest = _fixed_set_digest(fixed)
    parent_key = (parent_version.sha256, fixed_digest)
    if parent_key not in _fixed_scores:
        _remember_fixed_score(parent_key, trunk.evaluate(parent, fixed.glyphs, fixed.labels))
    parent_fixed = _fixed_scores[parent_key]
    root = RootBound(
        accuracy=_root_accuracy(parent_version, anchors, trunk),
        count=len(anchors["eval_labels"]),
        max_drop=config["MAX_TOTAL_FORGETTING"],
    )
    _heartbeat(run)
    # A few dozen steps from one seed may land anywhere within a couple of points of
    # forgetting; a rejected candidate gets another try from a different seed.
    for attempt in range(max(1, config["ATTEMPTS"])):
        candidate = fine_tune(
            parent,
            new_glyphs=new.glyphs,
            new_labels=new.labels,
            replay_glyphs=replay_pool.glyphs,
            replay_labels=replay_pool.labels,
            config=_fine_tune_config(seed=config["SEED"] + run.pk + 1000 * attempt),
            on_progress=heartbeat,
            trunk=trunk,
        )
        decision = gate(
            parent=parent,
            candidate=candidate,
            fixed_glyphs=fixed.glyphs,
            fixed_labels=fixed.labels,
            new_glyphs=new.glyphs,
            new_labels=new.labels,
            max_forgetting=config["MAX_FORGETTING"],
            parent_fixed=parent_fixed,
            root=root,
            trunk=trunk,
        )
        _heartbeat(run)
        if decision.passed:
            break
    weights = nn.serialize_state(candidate)
    candidate_key = (registry.weights_sha256(weights), fixed_digest)
    _remember_fixed_score(candidate_key, decision.candidate_fixed)
    metrics = {
        **decision.metrics,
        # With the gate's parent_overall: a pretrained parent's only figures on this set,
        # which the dashboard and admin show it by (its own metrics are on another set).
        "parent_digits": parent_fixed["digits"],
        "parent_letters": parent_fixed["letters"],
        "fixed_set": {
            "anchors": len(anchors["eval_labels"]),
            "user_heldout": len(heldout),
        },
        "trained_on": {
            "corrections": len(new),
            "user_replay": len(user_replay),
            "anchors": len(anchor_set),
        },
        "candidates_tried": attempt + 1,
        # Glyphs this run had to put through the trunk: few, once the worker is warm.
        "trunk_features_computed": trunk.computed - computed_before,
        "seconds": round(time.monotonic() - started, 3),
    }
    training_info = {
        "kind": "fine-tune",
        "training_run": run.pk,
        "settings": dict(config.items()),
        "correction_ids": [c.pk for c in corrections],
        # The version's trained_sample_ids are its corrected samples (the admin counts
        # them as such); these earlier labelled samples were trained on too, as replay.
        "replayed_sample_ids": sorted(int(i) for i in user_replay.sample_ids),
    }
    _publish(run, weights, decision.passed, decision.reason, metrics, training_info, new)


def _publish(run, weights, passed, reason, metrics, training_info, new):
    """Store the candidate's weights and settle the run and its corrections in one transaction.

    A run that the sweep failed meanwhile stores nothing: its corrections stay
    pending for the run the sweep queued, which may already be training them.
    """
    with transaction.atomic():
        # Checked first, by a write: its row lock (PostgreSQL), or the IMMEDIATE
        # transaction (SQLite), keeps the sweep out until this one commits, and no
        # weights file is written for a run that may not publish.
        if not _heartbeat(run):
            _given_up(run)
            return
        # The row lock makes a rollback that is committing now wait for, or be seen
        # by, this check (PostgreSQL); SQLite's IMMEDIATE transactions already serialize.
        parent_still_active = (
            ModelVersion.objects.select_for_update()
            .filter(pk=run.parent_version_id, status=ModelVersion.Status.ACTIVE)
            .exists()
        )
        if passed and not parent_still_active:
            passed, reason = False, "the parent version was deactivated during the run"
        version = registry.version_create(
            weights=weights,
            architecture=run.parent_version.architecture,
            metrics=metrics,
            training_info=training_info,
            parent=run.parent_version,
            trained_sample_ids=[int(i) for i in np.unique(new.sample_ids)],
            activate=passed,
        )
        if not passed:
            version.status = ModelVersion.Status.REJECTED
            version.save(update_fields=["status"])
        _finish(
            run,
            status=TrainingRun.Status.SUCCEEDED if passed else TrainingRun.Status.REJECTED,
            result_version=version,
            metrics=metrics,
            reason=reason,
            progress=1.0,
        )
        settled = run.corrections.filter(training_state=Correction.TrainingState.PENDING)
        if passed:
            settled.update(training_state=Correction.TrainingState.TRAINED)
        elif parent_still_active:
            settled.update(training_state=Correction.TrainingState.REJECTED)
        # Otherwise they stay pending and train on top of the newly active version.


# Runs in a row that could not load the active version before the sweep stops re-queueing.
_UNLOADABLE_PARENT_RUNS = 3


def _active_version_unloadable() -> bool:
    """Whether the active version's last runs all failed to load its weights (and say so).

    Retrying such a file every sweep only adds a failed run every few seconds; a new
    correction still tries again, and activating another version starts afresh.
    """
    active = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()
    last = TrainingRun.objects.filter(
        parent_version=active, status__in=TrainingRun.FINISHED
    ).order_by("-pk")[:_UNLOADABLE_PARENT_RUNS]
    # training_run_execute records a failure as "<exception type>: <message>".
    unloadable = f"{registry.WeightsIntegrityError.__name__}:"
    errors = [run.error for run in last if run.status == TrainingRun.Status.FAILED]
    if len(errors) < _UNLOADABLE_PARENT_RUNS or not all(e.startswith(unloadable) for e in errors):
        return False
    logger.error(
        "Not re-queueing pending corrections: the last %s runs could not load v%s's weights; "
        "restore its file or activate another version",
        _UNLOADABLE_PARENT_RUNS,
        active.number,
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
        error="worker lost: no heartbeat; its corrections go to the next run",
    )
    requeued = None
    if replay.pending_corrections() and not _active_version_unloadable():
        run, created = _queued_run()
        if created:
            # Its task is sent when this commits (at once outside a transaction), which
            # records its task_id in the row, not in this copy: checking this copy's
            # task_id below would send it a second time.
            requeued = run.pk
        else:
            idle = not TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).exists()
            waited = timezone.now() - run.created_at > timedelta(seconds=5)
            # A queued run whose message never went out, or was lost with its worker.
            if not run.task_id or (idle and waited):
                training_run_dispatch(run_id=run.pk)
                requeued = run.pk
    return {"failed_stale": failed, "dispatched": requeued}
