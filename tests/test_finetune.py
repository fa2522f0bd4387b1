"""Fine-tuning and its gate on the committed model and its own evaluation glyphs (no Django)."""

import numpy as np
import pytest
import torch

from training import nn
from training.finetune import FineTuneConfig, RootBound, fine_tune, gate
from training.trunk import FrozenTrunk

from .test_nn import DEFAULT_WEIGHTS, random_glyphs


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


def head_tuned(committed, trunk: FrozenTrunk | None = None, steps: int = 30, scope: str = "head"):
    """The committed model taught to read its own first misread evaluation glyph right."""
    model, glyphs, labels, _ = committed
    misread = np.flatnonzero(nn.predict_proba(model, glyphs).argmax(axis=1) != labels)[:1]
    candidate = fine_tune(
        model,
        new_glyphs=glyphs[misread],
        new_labels=labels[misread],
        replay_glyphs=glyphs[::4],
        replay_labels=labels[::4],
        config=FineTuneConfig(trainable=scope, steps=steps),
        trunk=trunk,
    )
    return candidate, glyphs[misread], labels[misread]


def test_a_head_fine_tune_learns_with_the_trunk_untouched(committed):
    model = committed[0]
    before = nn.serialize_state(model)
    candidate, glyph, label = head_tuned(committed, steps=60)
    assert nn.predict_proba(candidate, glyph).argmax(axis=1).tolist() == label.tolist()
    assert nn.trunk_digest(candidate) == nn.trunk_digest(model)
    assert nn.serialize_state(model) == before
    changed = candidate.classifier[1].weight - model.classifier[1].weight
    assert changed.abs().max() > 0


def test_the_trunk_scores_as_the_serving_copy_for_shared_and_other_trunks(committed):
    model, glyphs, labels, _ = committed
    trunk = FrozenTrunk(model)
    candidate, *_ = head_tuned(committed, trunk=trunk)
    other = nn.build_model().eval()
    assert trunk.shares(candidate) and not trunk.shares(other)
    for scored in (model, candidate, other):
        expected = nn.predict_proba(nn.for_inference(scored), glyphs[:200])
        assert np.allclose(trunk.predict_proba(scored, glyphs[:200]), expected, atol=1e-5)
    assert trunk.evaluate(model, glyphs, labels)["overall"] == committed[3]


def test_the_trunk_remembers_each_glyph_once_within_its_capacity(committed):
    trunk = FrozenTrunk(committed[0], capacity=10)
    glyphs = random_glyphs(8)
    first = trunk.features(np.concatenate([glyphs, glyphs[:3]]))
    assert first.shape == (11, trunk.dimension) and len(trunk) == 8
    assert torch.equal(first[8:], first[:3])
    assert torch.equal(trunk.features(glyphs), first[:8])
    trunk.features(random_glyphs(5, seed=1))
    assert len(trunk) == 10
    assert trunk.features(glyphs[:0]).shape == (0, trunk.dimension)


def test_a_head_fine_tune_refuses_another_models_trunk(committed):
    with pytest.raises(ValueError, match="trunk"):
        head_tuned(committed, trunk=FrozenTrunk(nn.build_model().eval()))


@pytest.mark.parametrize("scope", ["last", "head"])
def test_a_fine_tune_returns_exactly_what_its_stored_delta_loads_as(committed, scope):
    model = committed[0]
    candidate, _, _ = head_tuned(committed, steps=5, scope=scope)
    delta = nn.serialize_delta(candidate, names=nn.STORED[scope], base_sha256="base")
    if scope == "last":
        assert len(delta) < 25_000  # 9,508 numbers at half precision
    loaded = nn.apply_delta(
        nn.deserialize_state(DEFAULT_WEIGHTS.read_bytes()), delta, base_sha256="base"
    )
    for name, tensor in candidate.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
        if name not in nn.STORED[scope]:
            assert torch.equal(tensor, model.state_dict()[name]), name
    with pytest.raises(ValueError, match="another base"):
        nn.apply_delta(nn.build_model(), delta, base_sha256="another")
