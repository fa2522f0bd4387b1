"""A moderator in real headless Chromium: sign in, filter the review queue, relabel a sample."""

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.utils import timezone
from playwright.sync_api import expect

from recognition import services
from recognition.models import Correction, Sample
from training.models import ModelVersion, TrainingRun
from writers.models import PersonalModel

from .conftest import ARTIFACTS, ONE, SEVEN, copy_of, draw_png

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-browser-tests"


@pytest.fixture
def page(browser, live_server, default_model, moderators_group):
    context = browser.new_context(device_scale_factor=2, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(live_server.url + "/admin/")
    return page


def test_moderator_filters_the_queue_and_relabels(page, default_model):
    moderator = services.moderator_create(username="mod", password=PASSWORD)
    for strokes in (SEVEN, ONE):
        services.predict_drawing(image_data=draw_png(strokes), source="page")
    recorded = [[[x, y, 40 * t] for t, (x, y) in enumerate(SEVEN[0])]]
    disputed = services.predict_drawing(
        image_data=draw_png(SEVEN), source="page", strokes=recorded
    ).sample
    services.correct_sample(sample=disputed, label="1", source="page")  # a careless label

    page.fill("#id_username", "mod")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Review queue").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    page.locator("#changelist-filter").get_by_role(
        "link", name="Label differs from prediction"
    ).click()
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.field-label")).to_have_text("1")
    expect(rows.first.locator("img.drawing")).to_have_js_property("naturalWidth", 280)
    page.screenshot(path=ARTIFACTS / "admin-review-queue.png", full_page=True)

    rows.first.locator("input.action-select").check()
    page.select_option("select[name=action]", "relabel")
    page.get_by_role("button", name="Go").click()
    expect(page.locator('button[name="label"]')).to_have_count(36)
    page.screenshot(path=ARTIFACTS / "admin-relabel-choices.png", full_page=True)
    page.locator('button[name="label"][value="7"]').click()

    expect(page.locator(".messagelist")).to_contain_text("Relabelled 1 sample(s) as '7'")
    expect(page.locator("#result_list")).to_have_count(0)  # no longer disputed: off this list
    page.screenshot(path=ARTIFACTS / "admin-relabelled.png", full_page=True)

    correction = Correction.objects.filter(source=Correction.Source.ADMIN).get()
    assert correction.sample_id == disputed.pk and correction.author_id == moderator.pk
    assert (correction.previous_label, correction.label) == ("1", "7")
    disputed.refresh_from_db()
    assert disputed.label == "7" and disputed.status == Sample.Status.RELABELED
    # The model already reads it as 7: nothing to learn; the careless "1" is declined.
    assert not TrainingRun.objects.exists()
    careless = Correction.objects.get(source=Correction.Source.PAGE)
    assert careless.training_state == Correction.TrainingState.DECLINED

    admin = page.url.split("/admin/")[0] + "/admin/"
    page.goto(f"{admin}recognition/sample/{disputed.pk}/change/")
    expect(page.locator(".field-strokes_replay svg path")).to_have_count(1)
    page.wait_for_timeout(800)  # the replay draws its one stroke in 0.6 s
    expect(page.locator("#corrections-group")).to_contain_text("1 -> 7")
    page.screenshot(path=ARTIFACTS / "admin-sample-detail.png", full_page=True)
    page.goto(f"{admin}recognition/sample/dashboard/")
    # One version without figures is no line: a sentence says so rather than an empty axis.
    chart = page.locator("#accuracy-over-versions")
    expect(chart).to_contain_text("No chart yet: it appears once two versions have figures")
    expect(chart.locator("img")).to_have_count(0)
    # A fine-tune records its own figures and its parent's: two points a line.
    figures = {"overall": 0.9, "digits": 0.9, "letters": 0.9}
    fine_tune = copy_of(default_model)
    ModelVersion.objects.filter(pk=fine_tune.pk).update(
        parent=default_model,
        training_info={"kind": "fine-tune"},
        metrics={**figures, **{f"parent_{key}": 0.8 for key in figures}},
    )
    cache.clear()  # the chart is kept between pages
    page.reload()
    expect(chart.locator("img")).to_have_js_property("naturalWidth", 800)
    expect(chart).not_to_contain_text("No chart yet")
    page.screenshot(path=ARTIFACTS / "admin-dashboard.png", full_page=True)


def test_a_version_page_shows_the_whole_confusion_matrix_and_an_icon(page, default_model):
    services.moderator_create(username="mod", password=PASSWORD)
    errors = []
    page.on("console", lambda message: errors.append(message) if message.type == "error" else None)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.fill("#id_username", "mod")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    admin = page.url.split("/admin/")[0] + "/admin/"
    page.goto(f"{admin}training/modelversion/{default_model.pk}/change/")
    image = page.locator(".field-confusion_matrix img")
    expect(image).to_have_js_property("naturalWidth", 900)
    # The image shrinks to its box: the last columns (x, y, z) and the colour bar show.
    field = page.locator(".field-confusion_matrix").bounding_box()
    shown = image.bounding_box()
    assert shown["x"] + shown["width"] <= field["x"] + field["width"], (shown, field)
    ratio = shown["height"] / shown["width"]
    assert abs(ratio - 850 / 900) < 0.02  # scaled, not squashed
    page.screenshot(path=ARTIFACTS / "admin-version-confusion.png", full_page=True)
    page.wait_for_load_state("networkidle")
    assert page.locator('link[rel="icon"]').count() == 1
    assert [error.text for error in errors] == []


LAST_HEADER_PLACE = """() => {
    const results = document.querySelector("#changelist .results");
    const last = () => results.querySelector("#result_list thead th:last-child");
    const box = results.getBoundingClientRect();
    const shown = {
        text: last().textContent.trim(),
        right: last().getBoundingClientRect().right,
        boxRight: box.right,
        viewport: document.documentElement.clientWidth,
        overflowX: getComputedStyle(results).overflowX,
        scrollWidth: results.scrollWidth,
        clientWidth: results.clientWidth,
    };
    results.scrollLeft = results.scrollWidth;  // as far right as a person can scroll
    shown.scrolledRight = last().getBoundingClientRect().right;
    results.scrollLeft = 0;
    return shown;
}"""


def test_changelists_keep_their_last_column_in_reach(page, default_model):
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    sample = services.predict_drawing(image_data=draw_png(SEVEN), source="page").sample
    services.correct_sample(sample=sample, label="1", source="page")
    PersonalModel.objects.create(
        writer=f"user:{root.pk}",
        user=root,
        model_version=default_model,
        features=b"\0" * 512,
        labels="1",
        corrections=1,
        last_used_at=timezone.now(),
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    admin = page.url.split("/admin/")[0] + "/admin/"
    lists = ("recognition/sample/", "writers/personalmodel/", "recognition/correction/")
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 800})
        for path in lists:
            page.goto(admin + path)
            expect(page.locator("#result_list tbody tr")).to_have_count(1)
            shown = page.evaluate(LAST_HEADER_PLACE)
            where = (width, path, shown)
            # Never past the window's edge: nothing needs the page itself scrolled sideways.
            assert shown["boxRight"] <= shown["viewport"], where
            if width == 1280:
                # Beside the filter sidebar the whole row fits its box, no scrolling.
                assert shown["right"] <= shown["boxRight"] + 0.5, where
            elif shown["right"] > shown["boxRight"] + 0.5:
                # Narrower, the results scroll inside their box, to the last column.
                assert shown["overflowX"] in ("auto", "scroll"), where
                assert shown["scrollWidth"] > shown["clientWidth"], where
                assert shown["scrolledRight"] <= shown["boxRight"] + 0.5, where
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(admin + "recognition/sample/")
    page.screenshot(path=ARTIFACTS / "admin-sample-changelist.png", full_page=True)


def test_moderator_reviews_a_sample_from_its_own_page(page, default_model):
    services.moderator_create(username="mod", password=PASSWORD)
    sample = services.predict_drawing(image_data=draw_png(SEVEN), source="page").sample
    page.fill("#id_username", "mod")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(page.url.split("/admin/")[0] + f"/admin/recognition/sample/{sample.pk}/change/")
    page.screenshot(path=ARTIFACTS / "admin-sample-page.png", full_page=True)
    page.get_by_role("button", name="Confirm label").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Confirmed 1 sample")
    assert page.url.endswith("/admin/recognition/sample/")
    sample.refresh_from_db()
    assert sample.status == Sample.Status.CONFIRMED
