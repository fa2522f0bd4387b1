"""The page's mode switch, look-alike buttons and personal model in real headless Chromium."""

import math
import re

import pytest
from playwright.sync_api import expect

from recognition.models import Correction, Sample
from writers.models import PersonalModel

from .conftest import ARTIFACTS
from .test_browser import SEVEN, STALE, draw

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server, default_model):
    """The drawing page in a fresh browser context: its own session and localStorage."""
    page = browser.new_context(viewport={"width": 900, "height": 1000}).new_page()
    page.goto(live_server.url)
    return page


ONE = [(140, 50), (140, 235)]
# A circle drawn with a wide pen: the shared model cannot tell 0 from o.
LOOP = [
    (140 + 90 * math.sin(2 * math.pi * step / 48), 140 - 90 * math.cos(2 * math.pi * step / 48))
    for step in range(49)
]


def recognize(page, points):
    page.keyboard.press("Escape")
    draw(page, points)
    with page.expect_response("**/api/predictions/"):
        page.get_by_role("button", name="Recognize").click()
    expect(page.locator("#result")).not_to_have_class(STALE)


def test_mode_switch_is_sent_remembered_and_keyboard_reachable(page):
    any_mode = page.get_by_role("radio", name="Any")
    expect(any_mode).to_be_checked()
    any_mode.focus()
    page.keyboard.press("ArrowRight")  # a radio group moves with the arrow keys
    expect(page.get_by_role("radio", name="Digits")).to_be_checked()
    recognize(page, ONE)
    expect(page.locator("#guess-label")).to_have_text("1")
    assert Sample.objects.get().classes == "digits"

    with page.expect_response("**/api/predictions/"):
        page.get_by_role("radio", name="Letters").check()  # the shown "1" is asked again
    recognize(page, ONE)
    expect(page.locator("#guess-label")).to_have_text(re.compile("^[a-z]$"))
    assert all(bar.isalpha() for bar in page.locator("#top .bar-label").all_text_contents())
    assert Sample.objects.order_by("-pk").first().classes == "letters"

    page.reload()
    expect(page.get_by_role("radio", name="Letters")).to_be_checked()
    page.screenshot(path=ARTIFACTS / "page-mode-letters.png", full_page=True)


def test_lookalikes_ask_with_two_big_buttons_and_one_tap_stores_the_answer(page):
    page.locator("#pen-width").fill("26")
    recognize(page, LOOP)
    # "0 or o?", and any shape the active model's held-out confusion adds ("0, o or d?").
    question_text = re.compile(r"^(0|o)(, \w)* or \w\?$")
    expect(page.locator("#lookalike-question")).to_have_text(question_text)
    assert {"0", "o"} <= set(re.findall(r"\w", page.locator("#lookalike-question").inner_text()))
    expect(page.locator("#guess-main")).to_be_hidden()
    # "Right" would silently pick one of the two: the question is answered by its buttons
    # or the label grid.
    right = page.get_by_role("button", name="Right", exact=True)
    expect(right).to_be_hidden()
    expect(page.get_by_role("group", name="Correct label")).to_be_visible()
    buttons = page.locator(".lookalike-button")
    expect(buttons.nth(1)).to_be_visible()
    box = buttons.first.bounding_box()
    assert box["width"] >= 90 and box["height"] >= 90
    page.screenshot(path=ARTIFACTS / "page-lookalikes.png", full_page=True)

    question = page.get_by_role("group", name=re.compile(r"or .\?$"))
    question.get_by_role("button", name="o", exact=True).click()
    # A confirmation when "o" led, else a correction that teaches this writer first.
    expect(page.locator("#status")).to_have_text(re.compile(r"Saved|Learned for you"))
    correction = Correction.objects.get()
    assert correction.label == "o" and correction.source == "page"

    page.locator("#pen-width").fill("18")
    recognize(page, SEVEN)
    expect(page.locator("#lookalikes")).to_be_hidden()
    expect(page.locator("#guess-main")).to_be_visible()
    expect(right).to_be_visible()


def test_a_correction_shapes_the_next_answer_until_forgotten(page):
    recognize(page, SEVEN)
    expect(page.locator("#guess-label")).to_have_text("7")
    expect(page.locator("#personal-badge")).to_be_hidden()
    page.locator('.label-button[data-label="t"]').click()
    # Learned at once for this writer; the shared model waits for a moderator.
    expect(page.locator("#status")).to_contain_text("Learned for you")

    recognize(page, SEVEN)
    expect(page.locator("#guess-label")).to_have_text("t")
    expect(page.locator("#personal-badge")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "page-personal.png", full_page=True)
    assert PersonalModel.objects.get().writer.startswith("session:")

    forget = page.get_by_role("button", name="Forget my handwriting")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    forget.click()  # it cannot be undone: the page asks first
    page.wait_for_load_state("networkidle")
    assert "cannot be undone" in asked[0]
    assert PersonalModel.objects.exists()
    expect(page.locator("#result")).not_to_have_class(STALE)

    page.once("dialog", lambda dialog: dialog.accept())
    forget.click()
    expect(page.locator("#status")).to_contain_text("Forgot your handwriting")
    # The answer shown came from the model that is gone.
    expect(page.locator("#result")).to_have_class(STALE)
    assert not PersonalModel.objects.exists()
    recognize(page, SEVEN)
    expect(page.locator("#guess-label")).to_have_text("7")
    expect(page.locator("#personal-badge")).to_be_hidden()


def test_an_answer_the_writer_corrected_before_is_asked_about(page):
    recognize(page, SEVEN)
    expect(page.locator("#guess-label")).to_have_text("7")
    page.locator('.label-button[data-label="1"]').click()
    expect(page.locator("#status")).to_contain_text("Learned for you")

    # Another 7, unlike the one corrected, that the shared model reads as 7 with 1 behind.
    page.locator("#pen-width").fill("6")
    recognize(page, [(120, 60), (165, 60), (130, 230)])
    expect(page.locator("#lookalike-question")).to_have_text("7 or 1?")
    expect(page.locator("#lookalike-personal")).to_be_visible()
    expect(page.get_by_role("button", name="Right", exact=True)).to_be_hidden()
    page.screenshot(path=ARTIFACTS / "page-taught-lookalike.png", full_page=True)
    question = page.get_by_role("group", name="7 or 1?")
    with page.expect_response("**/corrections/"):
        question.get_by_role("button", name="1", exact=True).click()
    assert [c.label for c in Correction.objects.order_by("pk")] == ["1", "1"]


def test_digits_mode_offers_only_digits_to_correct_to(page):
    corrections = []
    page.on("request", lambda r: corrections.append(r) if "/corrections/" in r.url else None)
    page.get_by_role("radio", name="Digits").check()
    recognize(page, SEVEN)
    expect(page.locator("#guess-label")).to_have_text("7")
    labels = page.get_by_role("group", name="Correct label").get_by_role("button")
    expect(labels).to_have_count(10)  # the letters are not offered: the answer was a digit
    expect(page.locator('.label-button[data-label="t"]')).to_be_hidden()
    assert labels.all_text_contents() == list("0123456789")

    page.locator('.label-button[data-label="7"]').focus()
    page.keyboard.press("t")  # a letter is no answer in a digit field
    page.wait_for_load_state("networkidle")
    assert corrections == []
    with page.expect_response("**/corrections/"):
        page.keyboard.press("1")
    expect(page.locator("#status")).to_contain_text("Learned for you")
    assert [correction.label for correction in Correction.objects.all()] == ["1"]

    # Letters mode offers the letters.
    with page.expect_response("**/api/predictions/"):
        page.get_by_role("radio", name="Letters").check()
    expect(labels).to_have_count(26)
    recognize(page, ONE)
    expect(labels).to_have_count(26)
    expect(page.locator('.label-button[data-label="1"]')).to_be_hidden()
    page.locator('.label-button[data-label="l"]').click()
    expect(page.locator("#status")).to_contain_text(re.compile("Saved|Learned for you"))
    assert Correction.objects.order_by("-pk").first().label == "l"

    with page.expect_response("**/api/predictions/"):
        page.get_by_role("radio", name="Any").check()
    recognize(page, SEVEN)
    expect(labels).to_have_count(36)


def test_a_new_mode_recognizes_the_shown_drawing_again(page):
    recognize(page, SEVEN)
    guess = page.locator("#guess-label")
    expect(guess).to_have_text("7")
    labels = page.get_by_role("group", name="Correct label").get_by_role("button")
    expect(labels).to_have_count(36)

    with page.expect_response("**/api/predictions/"):
        page.get_by_role("radio", name="Letters").check()
    expect(guess).to_have_text(re.compile("^[a-z]$"))
    expect(labels).to_have_count(26)  # the label grid is the new mode's
    expect(page.locator("#result")).not_to_have_class(STALE)
    assert [sample.classes for sample in Sample.objects.order_by("pk")] == ["all", "letters"]

    page.get_by_role("radio", name="Letters").press("Control+z")  # the drawing changes
    expect(page.locator("#result")).to_have_class(STALE)
    page.get_by_role("radio", name="Digits").check()  # no answer shown: nothing to ask again
    page.wait_for_load_state("networkidle")
    assert Sample.objects.count() == 2
