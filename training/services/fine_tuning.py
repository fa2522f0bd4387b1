"""The fine-tune use case: a claimed run's corrections learned, gated, and published."""

import logging
import time

import torch
from django.conf import settings
from django.db import transaction

from recognition import selectors as recognition_selectors
from recognition import services as recognition_services

from .. import caches, registry, replay, runs
from ..finetune import GateDecision, RootBound, fine_tune, gate
from ..models import TrainingRun
from ..trunk import FrozenTrunk
from .config import fine_tune_config
from .publishing import candidate_weights, training_run_metrics, training_run_publish

logger = logging.getLogger(__name__)


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
        # Their samples were excluded or relabelled meanwhile: nothing was refused.
        _reject(run, reason="nothing left to learn", known=True)
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
    weights, base = candidate_weights(run=run, candidate=candidate)
    caches.remember_fixed_score(
        weights_sha256=registry.weights_sha256(weights),
        fixed_digest=fixed_digest,
        score=decision.candidate_fixed,
    )
    metrics = training_run_metrics(
        decision=decision,
        material=material,
        parent_fixed=parent_fixed,
        tried=tried,
        trunk=trunk,
        computed_before=computed_before,
        started=started,
    )
    training_run_publish(
        run=run,
        weights=weights,
        base=base,
        decision=decision,
        metrics=metrics,
        material=material,
    )


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
            config=fine_tune_config(seed=run.pk + 1000 * attempt),
            on_progress=beat,
            trunk=trunk,
        )
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
