"""Recognizing a drawing: the guess, and the sample and prediction that keep it."""

import base64
import bisect
import time
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from PIL import Image

from training.classes import CLASS_INDEX, CLASSES
from training.preprocessing import BlankImageError, preprocess_image
from training.serving import LoadedModel, active_model
from writers import services as writers_services
from writers.identity import Writer
from writers.prototypes import PersonalAnswer, personal_proba

from ..context import DEFAULT_CONTEXT, context_labels, context_proba
from ..images import DrawingError, decode_drawing, encode_png
from ..lookalikes import lookalike_pairs, lookalikes_of
from ..models import LATENCY_BOUNDS_MS, Prediction, PredictionTally, Sample

TOP_K = 5


@dataclass(frozen=True)
class PredictionOutcome:
    sample: Sample
    prediction: Prediction
    top: list[dict]
    preview_png: bytes
    # The serving model's version number, known without reading its row back.
    model_version_number: int
    # The leading guesses when they are look-alikes too close to call, else empty.
    lookalikes: list[str]
    # Whether the writer's personal model changed the answer or what it offers.
    personal: bool

    @property
    def preview_data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.preview_png).decode("ascii")


def predict_drawing(
    *,
    image_data: bytes,
    source: str,
    strokes: list | None = None,
    user=None,
    session_key: str = "",
    writer: Writer | None = None,
    classes: str = DEFAULT_CONTEXT,
) -> PredictionOutcome:
    """Recognize one drawing among the ``classes`` allowed, for ``writer``, and keep it.

    ``classes`` is a context from ``context.context_parse``. With a writer who has a
    personal model, it shapes the answer; everyone else gets the shared model's.
    Raises DrawingError for bad input (nothing is stored) and
    training.registry.NoActiveModel when no model can serve.
    """
    image = decode_drawing(image_data)
    started = time.perf_counter()
    glyph = _glyph(image)
    loaded = active_model.get()
    answer = _answer(glyph, loaded=loaded, writer=writer)
    probabilities = context_proba(answer.logits, classes)
    latency_ms = (time.perf_counter() - started) * 1000.0

    top = _top(probabilities, classes=classes)
    sample = Sample(
        width=image.width,
        height=image.height,
        glyph=glyph.tobytes(),
        strokes=strokes,
        source=source,
        user=user if user is not None and user.is_authenticated else None,
        session_key=session_key or "",
        writer=writer.key if writer else "",
        classes=classes,
        predicted_label=top[0]["label"],
        confidence=top[0]["probability"],
        model_version_number=loaded.number,
    )
    stored_png = image_data if image.format == "PNG" else encode_png(image)
    prediction = Prediction(
        model_version_id=loaded.version_id,
        label=top[0]["label"],
        confidence=top[0]["probability"],
        probabilities=[round(float(p), 6) for p in probabilities],
        latency_ms=latency_ms,
    )
    pairs = lookalike_pairs(loaded.version_id)
    lookalikes = lookalikes_of(probabilities, pairs, answer.taught)
    personal = answer.shaped or (
        bool(answer.taught) and lookalikes != lookalikes_of(probabilities, pairs)
    )
    sample.predicted_personally = prediction.personal = personal
    _store(sample=sample, png=stored_png, prediction=prediction)
    return PredictionOutcome(
        sample=sample,
        prediction=prediction,
        top=top,
        preview_png=encode_png(Image.fromarray(glyph, mode="L")),
        model_version_number=loaded.number,
        lookalikes=lookalikes,
        personal=personal,
    )


def _glyph(image: Image.Image) -> np.ndarray:
    try:
        return preprocess_image(image)
    except BlankImageError as error:
        raise DrawingError("blank", f"Nothing to read: {error}.") from None


def _answer(glyph: np.ndarray, *, loaded: LoadedModel, writer: Writer | None) -> PersonalAnswer:
    """Through the writer's personal model when they have one, else the shared model's."""
    prototypes = writer and writers_services.personal_model_use(
        writer_key=writer.key, loaded=loaded
    )
    if prototypes:
        return personal_proba(loaded.model, glyph, prototypes)
    return PersonalAnswer(loaded.predict_logits(glyph[np.newaxis])[0], False, frozenset())


def _top(probabilities: np.ndarray, *, classes: str) -> list[dict]:
    """The TOP_K most likely labels the context allows, best first."""
    allowed = context_labels(classes)
    best_first = [CLASSES[index] for index in np.argsort(probabilities)[::-1]]
    return [
        {"label": label, "probability": float(probabilities[CLASS_INDEX[label]])}
        for label in best_first
        if label in allowed
    ][:TOP_K]


def _store(*, sample: Sample, png: bytes, prediction: Prediction):
    """Save the drawing's file, then its rows in one transaction; no file stays without them."""
    sample.image.save("drawing.png", ContentFile(png), save=False)
    try:
        with transaction.atomic():
            sample.save()
            prediction.sample = sample
            prediction.save(force_insert=True)
            _prediction_tally_add(label=prediction.label, latency_ms=prediction.latency_ms)
    except BaseException:
        sample.image.delete(save=False)
        raise


def _prediction_tally_add(*, label: str, latency_ms: float):
    """Count one prediction in its (label, latency bucket) row, inside the caller's transaction."""
    bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)
    row = PredictionTally.objects.filter(label=label, bucket=bucket)

    def count_in_row() -> int:
        return row.update(count=F("count") + 1, sum_ms=F("sum_ms") + latency_ms)

    if count_in_row():
        return
    try:
        with transaction.atomic():  # the row's first prediction, unless another process won
            PredictionTally.objects.create(label=label, bucket=bucket, count=1, sum_ms=latency_ms)
    except IntegrityError:
        count_in_row()
