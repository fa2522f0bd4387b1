"""Training's use cases: fine-tune a claimed run and publish its version; warm a worker up.

The run's life cycle (request, claim, heartbeat, finish, sweep) is in ``runs``;
what a worker process remembers between runs is in ``caches``.
"""

import dataclasses
import logging
import time

import numpy as np
import torch
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction

from recognition import selectors as recognition_selectors
from recognition import services as recognition_services

from . import caches, nn, registry, replay, runs, selectors
from .finetune import FineTuneConfig, FrozenTrunk, GateDecision, RootBound, fine_tune, gate
from .models import ModelVersion, TrainingRun

logger = logging.getLogger(__name__)


def _fine_tune_config(*, seed: int, **overrides) -> FineTuneConfig:
    """The product's configuration with the operator's settings (those that are set)."""
    operator = {
        "steps": settings.FINE_TUNE["STEPS"],
        "max_seconds": settings.FINE_TUNE["MAX_SECONDS"],
    }
    chosen = {name: value for name, value in operator.items() if value is not None}
    return FineTuneConfig(**{**chosen, **overrides}, seed=seed)


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Run one fine-tune to its end. Idempotent: a finished run is left as it is.

    Raises runs.TrainingBusy while another run holds the single-writer slot.
    """
    run = runs.training_run_claim(run_id=run_id)
    if run is None:
        return TrainingRun.objects.filter(pk=run_id).first()
    try:
        training_run_fine_tune(run=run)
    except Exception as error:
        # Its corrections stay pending; the sweep retries them, at its own pace.
        logger.exception("Training run %s failed", run.pk)
        kind = TrainingRun.FailureKind.ERROR
        if isinstance(error, registry.WeightsIntegrityError):
            kind = TrainingRun.FailureKind.UNLOADABLE_WEIGHTS
        runs.training_run_fail(run, error=error, kind=kind)
        return run
    if recognition_selectors.corrections_pending().exists():
        runs.training_run_request()
    return run


def training_run_fine_tune(*, run: TrainingRun) -> None:
    """Fine-tune the run's parent on its corrections and publish the candidate as a version.

    The version is active only if it passes the gate; a run the sweep failed
    meanwhile publishes nothing.
    """
    if run.parent_version is None:
        raise RuntimeError("no active model version to fine-tune")
    new = replay.new_corrections_set(list(run.corrections.all()))
    if not len(new):
        _reject(run, reason="nothing left to learn")
        return

    started = time.monotonic()
    torch.set_num_threads(settings.FINE_TUNE["THREADS"])
    parent = registry.version_load_model(run.parent_version)
    anchors = registry.version_load_anchors(run.parent_version)
    material = replay.run_material(
        new=new, anchors=anchors, heldout_every=settings.FINE_TUNE["HELDOUT_EVERY"], seed=run.pk
    )
    # Steps beat on their own; loading, scoring and gating do not, and on a busy
    # machine each may take a while: a beat after every phase keeps the sweep's
    # silence measured per phase, and a cold trunk's long pass beats inside it.
    runs.training_run_heartbeat(run)
    trunk = caches.frozen_trunk(parent)
    trunk.on_batch = runs.ProgressBeat(run).alive
    try:
        _fine_tune_on_trunk(
            run=run, parent=parent, anchors=anchors, material=material, trunk=trunk, started=started
        )
    finally:
        trunk.on_batch = None


def _fine_tune_on_trunk(
    *,
    run: TrainingRun,
    parent: torch.nn.Module,
    anchors: dict,
    material: replay.Material,
    trunk: FrozenTrunk,
    started: float,
):
    """Train, gate and publish; no version when the candidate would change nothing."""
    if trunk.evaluate(parent, material.new.glyphs, material.new.labels)["overall"] >= 1.0:
        _reject(
            run, reason="nothing to learn: the parent already reads every correction", known=True
        )
        return
    computed_before = trunk.computed
    fixed_digest = caches.fixed_set_digest(material.fixed)
    parent_fixed = caches.fixed_score(
        weights_sha256=run.parent_version.sha256,
        fixed_digest=fixed_digest,
        compute=lambda: trunk.evaluate(parent, material.fixed.glyphs, material.fixed.labels),
    )
    root = RootBound(
        accuracy=caches.root_accuracy(run.parent_version, anchors, trunk),
        count=material.anchor_eval_count,
        max_drop=settings.FINE_TUNE["MAX_TOTAL_FORGETTING"],
    )
    runs.training_run_heartbeat(run)
    candidate, decision, tried = _train_until_passed(
        run=run, parent=parent, material=material, parent_fixed=parent_fixed, root=root, trunk=trunk
    )
    if not decision.learned:
        # It reads its corrections no better than its parent: no version, no weights.
        _reject(run, reason=decision.reason)
        return
    # A head-only candidate stores its head alone; the trunk is its parent's.
    trunk_version = registry.version_trunk(run.parent_version) if _head_only() else None
    if trunk_version is None:
        weights = nn.serialize_state(candidate)
    else:
        weights = nn.serialize_head(candidate, trunk_sha256=trunk_version.sha256)
    caches.remember_fixed_score(
        weights_sha256=registry.weights_sha256(weights),
        fixed_digest=fixed_digest,
        score=decision.candidate_fixed,
    )
    metrics = {
        **decision.metrics,
        **_run_figures(material=material, parent_fixed=parent_fixed),
        "candidates_tried": tried,
        # Glyphs this run had to put through the trunk: few, once the worker is warm.
        "trunk_features_computed": trunk.computed - computed_before,
        "seconds": round(time.monotonic() - started, 3),
    }
    _publish(
        run=run,
        weights=weights,
        trunk=trunk_version,
        decision=decision,
        metrics=metrics,
        material=material,
    )


def _head_only() -> bool:
    return _fine_tune_config(seed=0).trainable == "head"


def _reject(run: TrainingRun, *, reason: str, known: bool = False):
    """Finish a run that publishes nothing, and its corrections with it; ``known``: its
    parent already reads every one of them (nothing to learn, nothing refused)."""
    with transaction.atomic():
        if runs.training_run_finish(
            run, status=TrainingRun.Status.REJECTED, reason=reason, progress=1.0
        ):
            if known:
                recognition_services.corrections_already_known(run=run)
            else:
                recognition_services.corrections_settle(run=run, learned=False)


def _run_figures(*, material: replay.Material, parent_fixed: dict) -> dict:
    return {
        # With the gate's parent_overall: a pretrained parent's only figures on this set,
        # which the dashboard and admin show it by (its own metrics are on another set).
        "parent_digits": parent_fixed["digits"],
        "parent_letters": parent_fixed["letters"],
        "fixed_set": {
            "anchors": material.anchor_eval_count,
            "user_heldout": material.heldout_count,
        },
        "trained_on": {
            "corrections": len(material.new),
            "user_replay": len(material.user_replay),
            "anchors": len(material.anchors),
        },
    }


def _train_until_passed(
    *,
    run: TrainingRun,
    parent: torch.nn.Module,
    material: replay.Material,
    parent_fixed: dict,
    root: RootBound,
    trunk: FrozenTrunk,
) -> tuple[torch.nn.Module, GateDecision, int]:
    """Candidates from different seeds until one passes the gate or the attempts run out.

    A few dozen steps from one seed may land anywhere within a couple of points of
    forgetting, so a rejected candidate gets another try. Returns the last candidate,
    its gate decision and how many were tried.
    """
    beat = runs.ProgressBeat(run)
    for attempt in range(max(1, settings.FINE_TUNE["ATTEMPTS"])):
        candidate = fine_tune(
            parent,
            new_glyphs=material.new.glyphs,
            new_labels=material.new.labels,
            replay_glyphs=material.replay.glyphs,
            replay_labels=material.replay.labels,
            config=_fine_tune_config(seed=run.pk + 1000 * attempt),
            on_progress=beat,
            trunk=trunk,
        )
        if _head_only():
            nn.head_to_half(candidate)  # judged as it will be stored
        decision = gate(
            parent=parent,
            candidate=candidate,
            fixed_glyphs=material.fixed.glyphs,
            fixed_labels=material.fixed.labels,
            new_glyphs=material.new.glyphs,
            new_labels=material.new.labels,
            max_forgetting=settings.FINE_TUNE["MAX_FORGETTING"],
            parent_fixed=parent_fixed,
            root=root,
            trunk=trunk,
        )
        runs.training_run_heartbeat(run)
        if decision.passed:
            break
    return candidate, decision, attempt + 1


def _publish(
    *,
    run: TrainingRun,
    weights: bytes,
    trunk: ModelVersion | None,
    decision: GateDecision,
    metrics: dict,
    material: replay.Material,
):
    """Store the candidate's weights and settle the run and its corrections in one transaction.

    A run that the sweep failed meanwhile stores nothing: its corrections stay
    pending for the run the sweep queued, which may already be training them.
    """
    passed, reason = decision.passed, decision.reason
    with transaction.atomic():
        # Checked first, by a write: its row lock (PostgreSQL), or the IMMEDIATE
        # transaction (SQLite), keeps the sweep out until this one commits, and no
        # weights file is written for a run that may not publish.
        if not runs.training_run_heartbeat(run):
            runs.training_run_given_up(run)
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
            training_info=_training_info(run=run, material=material),
            parent=run.parent_version,
            trained_sample_ids=[int(i) for i in np.unique(material.new.sample_ids)],
            activate=passed,
            trunk=trunk,
        )
        if not passed:
            version.status = ModelVersion.Status.REJECTED
            version.save(update_fields=["status"])
        runs.training_run_finish(
            run,
            status=TrainingRun.Status.SUCCEEDED if passed else TrainingRun.Status.REJECTED,
            result_version=version,
            metrics=metrics,
            reason=reason,
            progress=1.0,
        )
        # A candidate refused only because its parent lost its place leaves the
        # corrections pending: they train on top of the newly active version.
        if passed or parent_still_active:
            recognition_services.corrections_settle(run=run, learned=passed)


def _training_info(*, run: TrainingRun, material: replay.Material) -> dict:
    return {
        "kind": "fine-tune",
        "training_run": run.pk,
        "settings": dict(settings.FINE_TUNE.items()),
        "config": dataclasses.asdict(_fine_tune_config(seed=run.pk)),
        "correction_ids": sorted(run.corrections.values_list("pk", flat=True)),
        # The version's trained_sample_ids are its corrected samples (the admin counts
        # them as such); these earlier labelled samples were trained on too, as replay.
        "replayed_sample_ids": sorted(int(i) for i in material.user_replay.sample_ids),
    }


def training_warm_up() -> int:
    """Compute what every run of the active chain needs, so a worker's first run is as quick
    as the rest: its trunk's features of the anchor and evaluation glyphs, the root's score,
    and a throwaway two-step fine-tune (a process's first one pays to set up autograd, the
    optimizer and the kernels).

    Returns how many glyphs' features this process now remembers.
    """
    version = selectors.version_active()
    if version is None:
        return 0
    torch.set_num_threads(settings.FINE_TUNE["THREADS"])
    anchors = registry.version_load_anchors(version)
    model = registry.version_load_model(version)
    trunk = caches.frozen_trunk(model)
    glyphs, labels = anchors["anchor_glyphs"], anchors["anchor_labels"]
    trunk.features(np.concatenate([glyphs, anchors["eval_glyphs"]]))
    caches.root_accuracy(version, anchors, trunk)
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


class VersionPruned(Exception):
    """A version whose weights file ``prune_versions`` deleted serves no more."""


class ActivationNotPermitted(PermissionDenied):
    """Only people with ``training.change_modelversion`` choose the model everyone is served."""


def model_version_activate(*, version: ModelVersion, user) -> ModelVersion:
    """Activate ``version`` at a person's request (roll back or forward), with an admin log entry.

    The one way the API and the admin activate: both need ``training.change_modelversion``,
    which moderators do not have, whatever the version's status.
    """
    if not (user and user.is_authenticated and user.has_perm("training.change_modelversion")):
        raise ActivationNotPermitted(
            "Activating a model version needs the training.change_modelversion permission."
        )
    if version.pruned_at is not None:
        raise VersionPruned(f"v{version.number}'s weights were pruned; it cannot be activated.")
    with transaction.atomic():
        registry.version_activate(version=version)
        LogEntry.objects.log_actions(
            user_id=user.pk,
            queryset=[version],
            action_flag=CHANGE,
            change_message="Activated",
            single_object=True,
        )
    return version


def model_versions_pin(*, versions, pinned: bool) -> int:
    """Keep these versions' weights from ``prune_versions`` (or let it take them again)."""
    return ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).update(pinned=pinned)
