"""The drawing page in real headless Chromium: draw, recognize, correct, and find it all stored."""

import io
import re

import pytest
from django.conf import settings
from PIL import Image
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
    # A letter key corrects while a prediction is shown and the focus is on its labels,
    # as the hint says where there is a keyboard.
    assert "press its key" in page.locator("#confirm-row").inner_text()
    page.get_by_role("group", name="Correct label").get_by_role("button").first.focus()
    page.keyboard.press("t")
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


def requests_to(page, part):
    """The requests the page sends whose URL contains ``part``, as they are sent."""
    sent = []
    page.on("request", lambda request: sent.append(request) if part in request.url else None)
    return sent


def test_label_keys_correct_only_from_the_correction_area(page):
    corrections = requests_to(page, "/corrections/")
    draw(page, SEVEN)
    recognize = page.get_by_role("button", name="Recognize")
    recognize.click()
    expect(page.locator("#guess-label")).to_have_text("7")

    recognize.focus()
    page.keyboard.press("r")  # a stray key outside the labels corrects nothing
    page.locator('.label-button[data-label="7"]').focus()
    with page.expect_response("**/corrections/"):
        page.keyboard.press("t")  # from the label grid, a key is the label
    expect(page.locator("#status")).to_contain_text("Learned for you")
    assert len(corrections) == 1
    assert [correction.label for correction in Correction.objects.all()] == ["t"]

    # Drawing the next character hides the old answer: no key can label the old sample.
    page.locator('.label-button[data-label="7"]').focus()  # scrolls the canvas away
    page.locator("#canvas").scroll_into_view_if_needed()
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 150, steps=4)
    expect(page.locator("#result")).to_be_hidden()
    page.keyboard.press("k")
    page.mouse.move(box["x"] + 220, box["y"] + 150, steps=4)
    page.mouse.up()
    page.keyboard.press("x")
    with page.expect_response("**/api/predictions/"):
        recognize.click()
    expect(page.locator("#result")).to_be_visible()
    assert len(corrections) == 1
    assert Correction.objects.count() == 1


def test_a_double_click_on_recognize_stores_one_sample(page):
    predictions = requests_to(page, "/api/predictions/")
    draw(page, SEVEN)
    recognize = page.get_by_role("button", name="Recognize")
    recognize.dblclick()
    expect(page.locator("#guess-label")).to_have_text("7")
    expect(recognize).to_be_enabled()  # disabled only while the answer is on its way
    page.wait_for_load_state("networkidle")
    assert len(predictions) == 1
    assert Sample.objects.count() == 1


def test_failures_are_told_in_plain_words(page):
    draw(page, SEVEN)
    recognize = page.get_by_role("button", name="Recognize")
    status = page.locator("#status")

    page.route(
        "**/api/predictions/",
        lambda route: route.fulfill(status=502, content_type="text/html", body="Bad Gateway"),
    )
    recognize.click()
    expect(status).to_have_text("The server had a problem. Please try again.")
    expect(recognize).to_be_enabled()
    page.unroute("**/api/predictions/")

    page.route("**/api/predictions/", lambda route: route.abort("internetdisconnected"))
    recognize.click()
    expect(status).to_have_text("Couldn't reach the server. Check your connection and try again.")
    expect(recognize).to_be_enabled()
    page.unroute("**/api/predictions/")

    recognize.click()  # the API's own reason for a request it refuses stays
    expect(page.locator("#guess-label")).to_have_text("7")
    page.get_by_role("button", name="Clear").click()
    recognize.click()
    expect(status).to_contain_text("blank")
    expect(status).to_have_attribute("data-tone", "error")
    assert Sample.objects.count() == 1


FOCUS_RING = (0xF0, 0xA5, 0x00)  # --focus in app.css


def ring_pixels(page):
    """How many pixels of the canvas frame are the focus ring's colour."""
    shot = Image.open(io.BytesIO(page.locator(".canvas-frame").screenshot())).convert("RGB")
    return sum(
        all(abs(value - ring) <= 24 for value, ring in zip(pixel, FOCUS_RING, strict=True))
        for pixel in shot.get_flattened_data()
    )


def test_the_canvas_shows_its_keyboard_focus(page):
    assert ring_pixels(page) == 0
    page.keyboard.press("Tab")  # the canvas is the page's first stop
    expect(page.locator("#canvas")).to_be_focused()
    # The frame clips what lies outside the canvas: the ring must show inside it.
    assert ring_pixels(page) > 4 * 280


def console_errors(page):
    """The console errors the page logs from now on, with the URL each is about."""
    errors = []
    page.on(
        "console",
        lambda message: (
            errors.append(f"{message.text} {message.location.get('url', '')}")
            if message.type == "error"
            else None
        ),
    )
    return errors


def test_the_page_loads_without_console_errors(browser, live_server, default_model):
    page = browser.new_context().new_page()
    errors = console_errors(page)
    page.goto(live_server.url)
    expect(page.locator("#model-version")).to_have_text(f"v{default_model.number}")
    page.wait_for_load_state("networkidle")
    assert errors == []  # a missing /favicon.ico was one
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(live_server.url + icon).ok


def test_the_pen_width_slider_shows_its_value(page):
    slider = page.locator("#pen-width")
    shown = page.locator("#pen-width-value")
    expect(shown).to_have_text("18 px")
    expect(slider).to_have_attribute("aria-valuetext", "18 px")
    slider.fill("26")
    expect(shown).to_have_text("26 px")
    expect(slider).to_have_attribute("aria-valuetext", "26 px")
    slider.focus()
    page.keyboard.press("ArrowLeft")
    expect(shown).to_have_text("25 px")


def test_on_a_phone_the_correction_is_confirmed_in_sight(browser, live_server, default_model):
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    page.goto(live_server.url)
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").tap()
    expect(page.locator("#guess-label")).to_have_text("7")
    # No keyboard on a phone: the hint about label keys is left out.
    expect(page.locator("#confirm-row .key-hint")).to_be_hidden()
    assert "press its key" not in page.locator("#confirm-row").inner_text()
    expect(page.locator("#confirm-row")).to_contain_text("or pick the right label")

    # The answer in sight, the grid's first row at the bottom of the screen, as after a
    # short scroll: the rest of the grid, and the line below it, are out of sight.
    label = page.locator('.label-button[data-label="1"]')
    label.evaluate(
        "button => window.scrollTo(0, window.scrollY + button.getBoundingClientRect().bottom"
        " - window.innerHeight + 4)"
    )
    assert label.bounding_box()["y"] > 844 - 80
    label.tap()
    status = page.locator("#status")
    expect(status).to_have_text("Learned for you; a moderator will review it for everyone.")
    # The line under the grid comes into sight (a smooth scroll), the tapped label with it.
    page.wait_for_function(
        "() => { const box = document.getElementById('status').getBoundingClientRect();"
        " return box.top >= 0 && box.bottom <= window.innerHeight; }",
        timeout=5_000,
    )
    page.wait_for_timeout(300)  # the scroll settles
    box = status.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    tapped = label.bounding_box()
    assert tapped["y"] >= 0 and tapped["y"] + tapped["height"] <= 844, tapped
    expect(label).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=ARTIFACTS / "page-phone-correction.png")
    assert Correction.objects.get().label == "1"
