"""Publishing a run's candidate: its weights as a version, its figures, and the run settled."""

import dataclasses
import time

import numpy as np
import torch
from django.conf import settings
from django.db import transaction

from recognition import services as recognition_services

from .. import registry, replay, runs
from ..finetune import GateDecision
from ..models import ModelVersion, TrainingRun
from ..trunk import FrozenTrunk
from .config import fine_tune_config


def candidate_weights(
    *, run: TrainingRun, candidate: torch.nn.Module
) -> tuple[bytes, ModelVersion | None]:
    """The bytes to store and the version they build on (None: a whole network).

    A head-only candidate stores what it trained, over weights already stored.
    """
    scope = fine_tune_config(seed=0).trainable
    return registry.candidate_weights(candidate, parent=run.parent_version, scope=scope)


def training_run_metrics(
    *,
    decision: GateDecision,
    material: replay.Material,
    parent_fixed: dict,
    tried: int,
    trunk: FrozenTrunk,
    computed_before: int,
    started: float,
) -> dict:
    """The figures a version keeps of the run that made it: the gate's, and the run's own."""
    return {
        **decision.metrics,
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
        "candidates_tried": tried,
        # Glyphs this run had to put through the trunk: few, once the worker is warm.
        "trunk_features_computed": trunk.computed - computed_before,
        "seconds": round(time.monotonic() - started, 3),
    }


def training_run_publish(
    *,
    run: TrainingRun,
    weights: bytes,
    base: ModelVersion | None,
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
            base=base,
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
        "config": dataclasses.asdict(fine_tune_config(seed=run.pk)),
        "correction_ids": sorted(run.corrections.values_list("pk", flat=True)),
        # The version's trained_sample_ids are its corrected samples (the admin counts
        # them as such); these earlier labelled samples were trained on too, as replay.
        "replayed_sample_ids": sorted(int(i) for i in material.user_replay.sample_ids),
    }
