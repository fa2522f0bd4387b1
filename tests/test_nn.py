"""The CNN and its plumbing, with no Django."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from training import nn, pretraining
from training.augment import augment_batch
from training.classes import CLASS_INDEX, NUM_CLASSES
from training.datasets import GlyphData

DEFAULT_WEIGHTS = (
    Path(__file__).resolve().parent.parent / "training" / "default_model" / "weights.pt"
)


def random_glyphs(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)


def test_shapes_and_probabilities():
    model = nn.build_model()
    probabilities = nn.predict_proba(model, random_glyphs(5))
    assert probabilities.shape == (5, NUM_CLASSES) and probabilities.dtype == np.float32
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert nn.predict_proba(model, random_glyphs(1)[0]).shape == (1, NUM_CLASSES)
    assert nn.glyphs_to_tensor(np.full((28, 28), 255, np.uint8)).max() == 1.0


def test_serialize_round_trip_gives_the_same_predictions():
    model = nn.build_model()
    copy = nn.deserialize_state(nn.serialize_state(model), nn.ARCHITECTURE)
    glyphs = random_glyphs(4)
    assert np.allclose(nn.predict_proba(model, glyphs), nn.predict_proba(copy, glyphs))


def test_frozen_batchnorm_keeps_its_statistics_while_training():
    model = nn.build_model()
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = norm.running_mean.clone(), norm.running_var.clone()
    nn.set_train_mode(model, freeze_bn=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = nn.glyphs_to_tensor(random_glyphs(8))
    for _ in range(3):
        loss = model(x).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])
    nn.set_train_mode(model, freeze_bn=False)
    model(x)
    assert not torch.equal(norm.running_mean, before[0])


def test_evaluate_counts_digits_letters_and_confusions():
    model = nn.build_model()
    glyphs = random_glyphs(6)
    predicted = nn.predict_proba(model, glyphs).argmax(1)
    labels = predicted.copy()
    labels[0] = (predicted[0] + 1) % NUM_CLASSES
    result = nn.evaluate(model, glyphs, labels)
    assert result["overall"] == 5 / 6 and result["count"] == 6
    assert np.asarray(result["confusion"]).sum() == 6
    assert np.asarray(result["confusion"])[labels[0], predicted[0]] == 1


def test_augmentation_is_seeded_and_keeps_ink():
    x = nn.glyphs_to_tensor(np.pad(np.full((12, 4), 255, np.uint8), ((8, 8), (12, 12))))
    x = x.repeat(16, 1, 1, 1)
    first = augment_batch(x, torch.Generator().manual_seed(1))
    again = augment_batch(x, torch.Generator().manual_seed(1))
    other = augment_batch(x, torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == x.shape and first.min() >= 0 and first.max() <= 1
    assert (first.flatten(1).sum(1) > 0.3 * x.flatten(1).sum(1)).all()
    assert not torch.equal(first[0], first[1])  # each glyph gets its own distortion


def test_the_serving_copy_folds_batchnorm_and_predicts_the_same():
    model = nn.deserialize_state(DEFAULT_WEIGHTS.read_bytes())
    served = nn.for_inference(model)
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in served.modules())
    glyphs = random_glyphs(16)
    assert np.allclose(nn.predict_proba(model, glyphs), nn.predict_proba(served, glyphs), atol=1e-5)
    assert model.features[1].running_mean.abs().sum() > 0  # the original is left as it was
    assert not set(map(id, served.parameters())) & set(map(id, model.parameters()))  # shares none


def test_pretraining_in_each_precision_gives_a_float32_servable_model():
    glyphs = random_glyphs(64)
    data = GlyphData(glyphs, np.arange(64) % NUM_CLASSES, [f"g{i}" for i in range(64)])
    untrained = nn.build_model().state_dict()
    for precision in ("fp32", "bf16", "fp16"):
        model = pretraining.pretrain(
            data, steps=4, batch_size=16, lr=1e-3, seed=0, precision=precision, progress=False
        )
        weights = model.features[0].weight
        assert weights.dtype == torch.float32 and weights.is_contiguous()
        assert not torch.equal(weights, untrained["features.0.weight"])
        served = nn.deserialize_state(nn.serialize_state(model))
        assert np.allclose(nn.predict_proba(model, glyphs), nn.predict_proba(served, glyphs))
    # bf16 only where the CPU computes it: converted on plain AVX512 it is the slower.
    native = pretraining.cpu_computes_bf16()
    assert pretraining.training_precision("auto") == ("bf16" if native else "fp32")
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        assert not native
    with pytest.raises(ValueError, match="precision"):
        pretraining.training_precision("fp8")


def test_a_pytorch_without_its_private_bf16_checks_trains_in_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert not pretraining.cpu_computes_bf16()
    assert pretraining.training_precision("auto") == "fp32"


def test_measuring_a_step_leaves_training_exactly_as_it_was():
    glyphs = random_glyphs(64)
    data = GlyphData(glyphs, np.arange(64) % NUM_CLASSES, [f"g{i}" for i in range(64)])
    start = nn.build_model()
    before = {name: tensor.clone() for name, tensor in start.state_dict().items()}

    def trained() -> dict:
        initial = nn.build_model()
        initial.load_state_dict(before)
        model = pretraining.pretrain(
            data, steps=3, batch_size=16, lr=1e-3, seed=0, progress=False, initial=initial
        )
        return model.state_dict()

    first = trained()
    seconds = pretraining.measure_step_seconds(data, batch_size=16, threads=1, initial=start)
    assert 0 < seconds < 10
    assert all(torch.equal(start.state_dict()[name], before[name]) for name in before)
    second = trained()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert pretraining.steps_within(60, seconds) == int(60 // seconds)
    assert pretraining.steps_within(0.001, 0.5) == 1


def test_auto_picks_a_device_that_is_here_and_its_native_precision():
    # This machine has no GPU: auto falls back to the CPU, named GPUs are refused.
    assert not torch.cuda.is_available() and not torch.backends.mps.is_available()
    assert pretraining.training_device("auto") == pretraining.training_device("cpu") == "cpu"
    for device in ("cuda", "mps"):
        with pytest.raises(pretraining.DeviceUnavailable, match=f"no {device} device"):
            pretraining.training_device(device)
    with pytest.raises(ValueError, match="unknown device"):
        pretraining.training_device("tpu")
    assert pretraining.training_precision("auto", "mps") == "fp16"
    assert pretraining.training_precision("fp32", "mps") == "fp32"


class InkReader(torch.nn.Module):
    """Reads "1" when a glyph holds much ink, "a" otherwise: 10 x mean ink against 1."""

    def forward(self, x):
        logits = torch.full((len(x), len(CLASS_INDEX)), -5.0)
        logits[:, CLASS_INDEX["1"]] = 10 * x.mean(dim=(1, 2, 3))
        logits[:, CLASS_INDEX["a"]] = 1.0
        return logits


def test_the_digit_prior_reads_the_classes_best_counted_alike_and_is_served():
    # "1"s hold 6, 8 and 12% ink, "a"s 2 and 4%: a prior of 0.5 reads all five right.
    ink = [0.06, 0.08, 0.12, 0.02, 0.04]
    glyphs = np.stack([np.full((28, 28), round(v * 255), np.uint8) for v in ink])
    labels = np.array([CLASS_INDEX["1"]] * 3 + [CLASS_INDEX["a"]] * 2)
    validation = GlyphData(glyphs, labels, [f"g{i}" for i in range(5)])

    chosen = pretraining.choose_digit_prior(InkReader(), validation)
    assert chosen["digit_prior"] == 0.5 and chosen["validation_balanced"] == 1.0
    unsearched = pretraining.choose_digit_prior(InkReader(), validation, search=False)
    assert unsearched["digit_prior"] == 0.0
    assert unsearched["validation_digits"] == pytest.approx(1 / 3)
    digits_only = validation.subset(labels == CLASS_INDEX["1"])
    nothing_to_weigh = pretraining.choose_digit_prior(InkReader(), digits_only)
    assert nothing_to_weigh["digit_prior"] == 0 and nothing_to_weigh["validation_balanced"] is None

    model = nn.build_model().eval()
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.fill_(-1.0)
        model.classifier[-1].bias[CLASS_INDEX["1"]] = 0.0  # every glyph reads "a", "1" behind
        model.classifier[-1].bias[CLASS_INDEX["a"]] = 1.0
    pretraining.add_digit_prior(model, 0.75)
    assert set(nn.served_proba(model, validation.glyphs).argmax(1)) == {CLASS_INDEX["a"]}
    pretraining.add_digit_prior(model, 0.5)
    assert set(nn.served_proba(model, validation.glyphs).argmax(1)) == {CLASS_INDEX["1"]}


def test_default_epochs_show_the_same_number_of_images_whatever_the_data():
    mnist_and_handwriting, mnist_and_emnist = 69_858, 175_560  # training sides, validation out
    assert pretraining.default_epochs(mnist_and_handwriting) == 20
    assert pretraining.default_epochs(mnist_and_emnist) == 8
    assert pretraining.default_epochs(10_000_000) == 1


def test_replay_anchors_come_evenly_from_each_source_whatever_its_size():
    def source(ink: int, per_class: int, classes: range) -> GlyphData:
        labels = np.repeat(np.array(classes), per_class)
        glyphs = np.full((len(labels), 28, 28), ink, np.uint8)
        return GlyphData(glyphs, labels, [f"{ink}/{i}" for i in range(len(labels))])

    # Pen strokes drawn twice outnumber the images ten to one, and only they have letters.
    strokes, images = source(200, 500, range(NUM_CLASSES)), source(100, 50, range(10))
    few = source(50, 3, range(1))  # three glyphs of "0": all of them, the rest from others
    heldout = source(10, 60, range(NUM_CLASSES))
    anchors = np.load(io.BytesIO(pretraining.anchor_set([strokes, images, few], heldout, seed=0)))

    ink, labels = anchors["anchor_glyphs"][:, 0, 0], anchors["anchor_labels"]
    per_class = pretraining.ANCHORS_PER_CLASS
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [per_class] * NUM_CLASSES
    zeros, ones, letters = ink[labels == 0], ink[labels == 1], ink[labels == NUM_CLASSES - 1]
    assert (zeros == 50).sum() == 3
    assert abs(int((zeros == 200).sum()) - int((zeros == 100).sum())) <= 1
    assert (ones == 200).sum() == (ones == 100).sum() == per_class // 2
    assert set(letters) == {200}
    assert np.bincount(anchors["eval_labels"]).tolist() == [per_class] * NUM_CLASSES
    assert set(anchors["eval_glyphs"][:, 0, 0]) == {10}
    heldout.glyphs[:] = np.arange(len(heldout))[:, None, None] % 251
    fixed_sets = [
        np.load(io.BytesIO(pretraining.anchor_set(mix, heldout, seed=0)))["eval_glyphs"]
        for mix in ([strokes, images, few], [images])
    ]
    assert np.array_equal(*fixed_sets)  # the gate's glyphs do not move with the training mix
