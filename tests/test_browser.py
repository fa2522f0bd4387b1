"""The drawing page in real headless Chromium: draw, recognize, correct, and find it all stored."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from recognition.models import Correction, Prediction, Sample
from training.models import TrainingRun

from .conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server, default_model):
    context = browser.new_context(device_scale_factor=2, viewport={"width": 900, "height": 1000})
    page = context.new_page()
    page.goto(live_server.url)
    return page


def draw(page, points):
    box = page.locator("#canvas").bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=6)
    page.mouse.up()


SEVEN = [(80, 60), (200, 60), (120, 235)]


def test_draw_recognize_and_correct(page, default_model):
    expect(page.locator("#model-version")).to_have_text(f"v{default_model.number}")
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#top .bar")).to_have_count(5)
    expect(page.locator("#guess-label")).to_have_text("7")
    preview_width = page.locator("#preview").evaluate("image => image.naturalWidth")
    assert preview_width == 28
    page.screenshot(path=ARTIFACTS / "page-prediction.png", full_page=True)
    # The README's picture of the page: what a newcomer sees after one drawing.
    page.screenshot(path=settings.BASE_DIR / "docs" / "page.png")

    page.locator('.label-button[data-label="t"]').click()
    # An anonymous writer's label waits for a moderator before the shared model learns it.
    expect(page.locator("#status")).to_have_text(
        "Learned for you; a moderator will review it for everyone."
    )
    page.screenshot(path=ARTIFACTS / "page-correction.png", full_page=True)

    sample = Sample.objects.get()
    assert sample.source == "page" and sample.session_key
    assert len(sample.strokes) == 1 and len(sample.strokes[0]) > 3
    assert all(len(point) == 3 for point in sample.strokes[0])
    assert (sample.width, sample.height) == (560, 560)  # the 2x backing store
    prediction = Prediction.objects.get(sample=sample)
    assert prediction.label == "7" and prediction.model_version == default_model
    correction = Correction.objects.get(sample=sample)
    assert correction.label == "t" and correction.source == "page"
    assert correction.previous_label == "7"
    assert correction.training_state == Correction.TrainingState.PROPOSED
    assert not TrainingRun.objects.exists()


def test_keyboard_undo_and_blank(page):
    draw(page, SEVEN)
    draw(page, [(60, 150), (220, 150)])
    page.keyboard.press("Control+z")
    page.keyboard.press("Enter")
    expect(page.locator("#guess-label")).to_have_text("7")
    page.keyboard.press("t")  # a letter key corrects while a prediction is shown
    expect(page.locator("#status")).to_contain_text("Learned for you")
    assert Correction.objects.get().label == "t"

    page.keyboard.press("Escape")
    expect(page.locator("#result")).to_be_hidden()
    page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#status")).to_contain_text("blank")
    assert Sample.objects.count() == 1


@pytest.mark.celery
def test_the_page_follows_a_correction_through_a_real_worker(
    page, default_model, start_worker, settings
):
    settings.LEARN_FROM = "everyone"  # the open loop: the page's own correction trains
    start_worker()
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#guess-label")).to_have_text("7")
    page.locator('.label-button[data-label="t"]').click()
    # A drawn 7 labelled "t" may be learned or refused by the gate: the page tells which.
    status = page.locator("#status")
    expect(status).to_contain_text(re.compile("Learned|not published"), timeout=60_000)
    page.screenshot(path=ARTIFACTS / "page-training-outcome.png", full_page=True)
    run = TrainingRun.objects.get()
    assert run.corrections.get() == Correction.objects.get()
    if run.status == TrainingRun.Status.SUCCEEDED:
        version = run.result_version.number
        expect(status).to_have_text(f"Learned “t”: now serving model v{version}.")
        assert run.reason == ""
        expect(page.locator("#model-version")).to_have_text(f"v{version}")
    else:
        assert run.status == TrainingRun.Status.REJECTED
        expect(status).to_contain_text("did not pass the checks")
        expect(status).not_to_contain_text(run.reason)  # the gate's reasons are for staff
        expect(page.locator("#model-version")).to_have_text(f"v{default_model.number}")
