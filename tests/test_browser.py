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
    """Draw one stroke through ``points``, given on the canvas's 280-pixel grid."""
    box = page.locator("#canvas").bounding_box()
    x0, y0 = box["x"], box["y"]
    scale = box["width"] / 280  # the canvas shrinks on the narrowest phones
    page.mouse.move(x0 + points[0][0] * scale, y0 + points[0][1] * scale)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x * scale, y0 + y * scale, steps=6)
    page.mouse.up()


SEVEN = [(80, 60), (200, 60), (120, 235)]
# The result panel of an answer about a drawing that has changed since.
STALE = re.compile(r"\bstale\b")


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
    page.locator("#pen-width").focus()  # the page's keys work from the slider too
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
    expect(page.locator("#result")).to_have_class(STALE)
    expect(page.locator("#canvas")).to_be_focused()  # not <body>: the next drawing starts here
    with page.expect_response("**/api/predictions/") as refused:
        page.get_by_role("button", name="Recognize").click()
    assert refused.value.json()["error"]["code"] == "blank"
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

    # Drawing the next character makes the old answer stale: no key can label the old sample.
    page.locator('.label-button[data-label="7"]').focus()  # scrolls the canvas away
    page.locator("#canvas").scroll_into_view_if_needed()
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 150)
    page.mouse.down()
    page.mouse.move(box["x"] + 140, box["y"] + 150, steps=4)
    expect(page.locator("#result")).to_have_class(STALE)
    assert page.locator("#result").evaluate("result => result.inert")
    page.keyboard.press("k")
    page.mouse.move(box["x"] + 220, box["y"] + 150, steps=4)
    page.mouse.up()
    page.keyboard.press("x")
    with page.expect_response("**/api/predictions/"):
        recognize.click()
    expect(page.locator("#result")).not_to_have_class(STALE)
    assert len(corrections) == 1
    assert Correction.objects.count() == 1


def test_recognize_again_on_an_unchanged_drawing_keeps_its_answer(page):
    predictions = requests_to(page, "/api/predictions/")
    draw(page, SEVEN)
    recognize = page.get_by_role("button", name="Recognize")
    recognize.click()
    expect(page.locator("#guess-label")).to_have_text("7")
    recognize.click()  # one drawing, one sample
    expect(page.locator("#result")).to_be_focused()
    expect(page.locator("#status")).to_have_text("Already recognized: the answer is shown.")
    page.wait_for_load_state("networkidle")
    assert len(predictions) == 1
    assert Sample.objects.count() == 1

    draw(page, [(60, 150), (220, 150)])  # a changed drawing is a new sample
    with page.expect_response("**/api/predictions/"):
        recognize.click()
    expect(page.locator("#result")).not_to_have_class(STALE)
    assert Sample.objects.count() == 2


def test_a_refused_correction_is_not_shown_as_saved(page, settings):
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "corrections": "1/min"},
    }
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#guess-label")).to_have_text("7")
    saved = page.locator('.label-button[data-label="t"]')
    refused = page.locator('.label-button[data-label="1"]')
    status = page.locator("#status")
    saved.click()
    expect(status).to_contain_text("Learned for you")

    refused.click()  # over the throttle: the API answers 429
    expect(status).to_have_text(
        re.compile(r"^“1” was not saved\. Too many requests\. Try again in \d+ s\.$")
    )
    expect(status).to_have_attribute("data-tone", "error")
    expect(refused).to_have_attribute("aria-pressed", "false")
    expect(saved).to_have_attribute("aria-pressed", "true")  # still the label that was saved
    assert [correction.label for correction in Correction.objects.all()] == ["t"]


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
    with page.expect_response("**/api/predictions/") as refused:
        recognize.click()
    assert refused.value.json()["error"]["code"] == "blank"
    expect(status).to_have_text(refused.value.json()["error"]["message"])
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


def phone(browser, live_server, *, width=390, height=844, **options):
    """The drawing page on a touch screen of ``width`` x ``height`` CSS pixels."""
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
        **options,
    )
    page = context.new_page()
    page.goto(live_server.url)
    return page


def wait_in_sight(page, selector):
    """Wait until the element lies wholly within the viewport (a smooth scroll takes a while)."""
    page.wait_for_function(
        "selector => { const box = document.querySelector(selector).getBoundingClientRect();"
        " return box.top > -1 && box.bottom < window.innerHeight + 1; }",  # subpixel layout
        arg=selector,
        timeout=5_000,
    )


def test_on_a_phone_each_step_comes_into_sight(browser, live_server, default_model):
    page = phone(browser, live_server)
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").tap()
    expect(page.locator("#guess-label")).to_have_text("7")
    # The answer comes into view below the canvas, its label grid with it.
    wait_in_sight(page, "#result")
    # No keyboard on a phone: the hint about label keys is left out.
    expect(page.locator("#confirm-row .key-hint")).to_be_hidden()
    assert "press its key" not in page.locator("#confirm-row").inner_text()
    expect(page.locator("#confirm-row")).to_contain_text("or pick the right label")
    # Every control is a finger's size.
    for control in page.locator("button:visible, .mode label, #pen-width").all():
        assert control.bounding_box()["height"] >= 44, control

    label = page.locator('.label-button[data-label="1"]')
    label.tap()
    status = page.locator("#status")
    expect(status).to_have_text("Learned for you; a moderator will review it for everyone.")
    # Saved: the canvas comes back for the next drawing, the line that tells beside it.
    wait_in_sight(page, ".board")
    page.wait_for_timeout(300)  # the scroll settles
    box = status.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844, box
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    expect(label).to_have_attribute("aria-pressed", "true")
    page.screenshot(path=ARTIFACTS / "page-phone-correction.png")
    assert Correction.objects.get().label == "1"


def test_a_stroke_started_on_a_phone_does_not_move_the_page(browser, live_server, default_model):
    page = phone(browser, live_server, reduced_motion="reduce")
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").tap()
    expect(page.locator("#guess-label")).to_have_text("7")
    # Scrolled to the answer, the canvas's lower half in sight above it.
    canvas = page.locator("#canvas")
    canvas.evaluate("canvas => window.scrollBy(0, canvas.getBoundingClientRect().top + 140)")
    before = canvas.bounding_box()
    assert before["y"] == pytest.approx(-140, abs=1)
    assert page.locator("#result").bounding_box()["y"] < 844

    finger = page.context.new_cdp_session(page)
    x, y = before["x"] + 60, before["y"] + 200

    def touch(kind, x, y):
        points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
        finger.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", x, y)
    expect(page.locator("#result")).to_have_class(STALE)  # the stroke has begun
    assert canvas.bounding_box() == before
    for step in range(1, 9):
        touch("touchMove", x + step * 20, y)
    touch("touchEnd", x, y)
    assert canvas.bounding_box() == before
    # The old answer keeps its place, dimmed and out of reach.
    expect(page.locator("#result")).to_be_visible()
    assert page.locator("#result").evaluate("result => result.inert")
    with page.expect_response("**/api/predictions/"):
        page.keyboard.press("Enter")
    stroke = Sample.objects.order_by("-pk").first().strokes[-1]
    assert stroke[0][:2] == [pytest.approx(60, abs=1), pytest.approx(200, abs=1)]


def test_a_320_px_phone_does_not_scroll_sideways(browser, live_server, default_model):
    page = phone(browser, live_server, width=320, height=568)
    box = page.locator("#canvas").bounding_box()
    assert box["width"] == box["height"] < 280  # the canvas shrinks with the screen
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").tap()
    expect(page.locator("#guess-label")).to_have_text("7")
    assert page.evaluate("document.documentElement.scrollWidth") == 320
    sample = Sample.objects.get()
    assert (sample.width, sample.height) == (840, 840)  # the backing store keeps its size
    # Points are kept on the canvas's 280-pixel grid, whatever size it is shown at.
    assert max(x for x, _, _ in sample.strokes[0]) == pytest.approx(200, abs=2)


def test_on_a_wide_screen_the_answer_sits_beside_the_canvas(browser, live_server, default_model):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    page = context.new_page()
    page.goto(live_server.url)
    draw(page, SEVEN)
    page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#guess-label")).to_have_text("7")
    canvas = page.locator("#canvas").bounding_box()
    result = page.locator("#result").bounding_box()
    assert result["x"] > canvas["x"] + canvas["width"]
    assert result["y"] < canvas["y"] + canvas["height"]  # beside it, not below
    assert result["y"] + result["height"] <= 800  # in sight without a scroll
    page.locator('.label-button[data-label="t"]').click()
    expect(page.locator("#status")).to_contain_text("Learned for you")
    assert page.evaluate("window.scrollY") == 0  # everything fits: nothing moved
    page.screenshot(path=ARTIFACTS / "page-wide.png")
