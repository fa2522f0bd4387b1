"""What a fine-tune replays and is judged on: trusted labels only, and a hold-out it never saw."""

import pytest

from recognition import dashboard, services
from recognition.models import Correction, Sample
from training import replay
from training.models import ModelVersion
from training.runs import training_run_request
from training.services import training_run_execute

from .conftest import ONE, SEVEN, ZERO, draw_png, misread_handwriting, teacher

pytestmark = pytest.mark.django_db

# Every id falls in the held-out share (id % 1 == 0), or none does (no id is 0 mod 10**9).
ALL_HELD_OUT = 1
NONE_HELD_OUT = 10**9


def predict(png: bytes) -> Sample:
    return services.predict_drawing(image_data=png, source="api").sample


def correct(sample: Sample, label: str) -> Correction:
    return services.correct_sample(
        sample=sample, label=label, source="api", author=teacher()
    ).correction


def fine_tune(settings, **overrides):
    """Run the queued fine-tune here, for real, on the production settings and one thread."""
    settings.FINE_TUNE = {**settings.FINE_TUNE, "THREADS": 1, **overrides}
    run = training_run_execute(run_id=training_run_request().pk)
    run.refresh_from_db()
    return run


def heldout_ids() -> set[int]:
    return set(replay.heldout_user_set(exclude_ids=(), every=ALL_HELD_OUT, limit=100).sample_ids)


def replayed_ids(seed: int = 0, per_class: int = 100) -> set[int]:
    return set(
        replay.replay_set(
            exclude_ids=(), per_class=per_class, every=NONE_HELD_OUT, seed=seed
        ).sample_ids
    )


@pytest.fixture
def moderator(db):
    return services.moderator_create(username="mod", password="pw-for-tests-only")


@pytest.fixture
def confirmed(default_model) -> Sample:
    """A 7 its drawer confirmed: the label agrees with the model, nothing to learn."""
    sample = predict(draw_png(SEVEN))
    assert correct(sample, "7").training_state == Correction.TrainingState.NOT_NEEDED
    return sample


@pytest.mark.slow  # a real (short) fine-tune
def test_the_held_out_set_leaves_out_what_a_published_fine_tune_learned(confirmed, settings):
    png, label = misread_handwriting(1)[0]
    learned = predict(png)
    correct(learned, label)
    assert heldout_ids() == {confirmed.pk, learned.pk}  # nothing trained yet

    run = fine_tune(settings)
    assert run.status == "succeeded", run.reason
    assert learned.pk in run.result_version.trained_sample_ids
    assert heldout_ids() == {confirmed.pk}

    # A newer correction, still pending, does not make the sample unseen again.
    correct(learned, "x")
    assert heldout_ids() == {confirmed.pk}


@pytest.mark.slow  # a real (short) fine-tune
def test_a_label_the_gate_refused_is_neither_replayed_nor_held_out(confirmed, settings, moderator):
    refused = predict(draw_png(ONE))
    correct(refused, "z")
    assert replayed_ids() == heldout_ids() == {confirmed.pk, refused.pk}

    # A gate no candidate can pass: it must forget less than nothing.
    run = fine_tune(settings, MAX_FORGETTING=-1.0, ATTEMPTS=1)
    assert run.status == "rejected"
    # A candidate that learned it but forgot is kept, refused; one that did not, is not stored.
    version = run.result_version
    assert version is None or version.status == ModelVersion.Status.REJECTED
    assert version is None or refused.pk in version.trained_sample_ids
    assert Correction.objects.get(sample=refused).training_state == "rejected"
    assert replayed_ids() == heldout_ids() == {confirmed.pk}

    # A moderator's label outranks it: the sample may be replayed again, under that label;
    # a refused candidate trained on it, so it never becomes held out again.
    services.sample_relabel(sample=refused, label="1", moderator=moderator)
    assert replayed_ids() == {confirmed.pk, refused.pk}
    assert heldout_ids() == {confirmed.pk}


def test_replay_of_a_class_takes_moderator_reviewed_samples_first(default_model, moderator):
    sevens = [predict(draw_png(SEVEN)) for _ in range(4)]
    for sample in sevens:
        correct(sample, "7")
    services.sample_confirm(sample=sevens[2], moderator=moderator)
    zero = predict(draw_png(ZERO))
    correct(zero, "0")
    for seed in range(8):
        assert replayed_ids(seed=seed, per_class=1) == {sevens[2].pk, zero.pk}
    # A class's quota left after its moderated samples is filled with the others.
    assert replayed_ids(per_class=2) > {sevens[2].pk, zero.pk}
    assert len(replayed_ids(per_class=2)) == 3


def test_the_held_out_share_is_never_replayed(confirmed):
    assert (
        replay.replay_set(exclude_ids=(), per_class=100, every=ALL_HELD_OUT, seed=0).sample_ids
        == ()
    )


@pytest.mark.slow  # a real (short) fine-tune
def test_the_dashboard_held_out_accuracy_counts_only_samples_no_fine_tune_took(confirmed, settings):
    png, label = misread_handwriting(1)[0]
    learned = predict(png)
    correct(learned, label)
    assert fine_tune(settings).status == "succeeded"

    settings.FINE_TUNE = {**settings.FINE_TUNE, "HELDOUT_EVERY": ALL_HELD_OUT}
    figures = dashboard.active_model_on_corrected_samples()
    assert figures["all"]["count"] == 2
    assert figures["heldout"]["count"] == 1  # the confirmed 7 alone
