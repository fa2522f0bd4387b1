"""The fine-tune gate on the committed model and its own evaluation glyphs (no Django)."""

import numpy as np
import pytest

from training import nn
from training.finetune import RootBound, gate

from .test_nn import DEFAULT_WEIGHTS


@pytest.fixture(scope="module")
def committed():
    model = nn.deserialize_state(DEFAULT_WEIGHTS.read_bytes())
    with np.load(DEFAULT_WEIGHTS.parent / "anchors.npz") as archive:
        glyphs, labels = archive["eval_glyphs"], archive["eval_labels"]
    predicted = nn.predict_proba(model, glyphs).argmax(axis=1)
    return model, glyphs, labels, float((predicted == labels).mean())


def decide(committed, root_accuracy: float):
    model, glyphs, labels, _ = committed
    known = np.flatnonzero(nn.predict_proba(model, glyphs[:50]).argmax(axis=1) == labels[:50])
    return gate(
        parent=model,
        candidate=model,  # learned nothing new, forgot nothing against its parent
        fixed_glyphs=glyphs,
        fixed_labels=labels,
        new_glyphs=glyphs[known[:1]],
        new_labels=labels[known[:1]],
        max_forgetting=0.01,
        root=RootBound(accuracy=root_accuracy, count=len(labels), max_drop=0.005),
    )


def test_a_candidate_within_the_total_budget_passes(committed):
    accuracy = committed[3]
    decision = decide(committed, root_accuracy=accuracy + 0.004)
    assert decision.passed, decision.reason
    assert decision.metrics["forgetting"] == 0
    assert decision.metrics["forgetting_since_root"] == pytest.approx(0.004)


def test_small_drops_that_add_up_past_the_budget_are_refused(committed):
    accuracy = committed[3]
    decision = decide(committed, root_accuracy=accuracy + 0.006)
    assert not decision.passed
    assert decision.reason.startswith("forgetting since the pretrained version, 0.60 points")
