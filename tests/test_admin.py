"""Moderation in the Django admin: permissions, the review queue, its actions, the dashboard."""

import base64
import io
import re
import zipfile

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from PIL import Image

from recognition import selectors, services
from recognition.models import Correction, Sample
from training import replay
from training.models import ModelVersion, TrainingRun

from .conftest import ONE, SEVEN, ZERO, draw_png, teacher

pytestmark = pytest.mark.django_db

SAMPLES = "/admin/recognition/sample/"
VERSIONS = "/admin/training/modelversion/"
SCRIBBLE = [[(60, 60), (220, 220)], [(220, 60), (60, 220)]]


@pytest.fixture
def moderator(db):
    return services.moderator_create(username="mod", password="pw-for-tests-only")


@pytest.fixture
def mod_client(moderator):
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def admin_client_(db):
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw-for-tests-only"))
    return client


def predict(drawing, **kwargs) -> Sample:
    outcome = services.predict_drawing(image_data=draw_png(drawing), source="api", **kwargs)
    return outcome.sample


@pytest.fixture
def samples(default_model) -> dict[str, Sample]:
    """A confident 7, a 1, a 0, and a scribble the model can only guess at."""
    recorded = [[[x, y, 40 * t] for t, (x, y) in enumerate(SEVEN[0])]]
    return {
        "seven": predict(SEVEN, strokes=recorded),
        "one": predict(ONE),
        "zero": predict(ZERO),
        "scribble": predict(SCRIBBLE),
    }


def relabel_of(sample: Sample) -> str:
    """A label the model did not answer for the bar, which a reader may take for 1, l or i."""
    return next(label for label in "l1i" if label != sample.predicted_label)


def correct_the_one(samples: dict[str, Sample]) -> str:
    """A teacher corrects the drawn 1 to another label it could be; returns that label."""
    label = relabel_of(samples["one"])
    services.correct_sample(sample=samples["one"], label=label, source="api", author=teacher())
    return label


def act(client, url, action, samples, **extra):
    return client.post(
        url,
        {"action": action, ACTION_CHECKBOX_NAME: [s.pk for s in samples], **extra},
        follow=True,
    )


def changelist_ids(response) -> list[int]:
    return [row.pk for row in response.context["cl"].result_list]


def test_moderators_group_has_exactly_the_moderation_permissions():
    codenames = set(
        Group.objects.get(name="Moderators").permissions.values_list(
            "content_type__app_label", "codename"
        )
    )
    assert codenames == {
        ("recognition", "view_sample"),
        ("recognition", "change_sample"),
        ("recognition", "moderate_sample"),
        ("recognition", "view_prediction"),
        ("recognition", "view_correction"),
        ("training", "view_modelversion"),
        ("training", "view_trainingrun"),
        ("writers", "view_personalmodel"),
        ("writers", "delete_personalmodel"),
    }


def test_create_moderator_command(db, monkeypatch):
    monkeypatch.setenv("DJANGO_MODERATOR_PASSWORD", "a-long-test-password")
    call_command("create_moderator", "alice", "--email", "a@example.com", "--noinput", verbosity=0)
    alice = User.objects.get(username="alice")
    assert alice.is_staff and not alice.is_superuser
    assert alice.check_password("a-long-test-password")
    assert alice.has_perm("recognition.moderate_sample")
    assert not alice.has_perm("auth.change_user")
    monkeypatch.delenv("DJANGO_MODERATOR_PASSWORD")
    call_command("create_moderator", "alice", "--noinput", verbosity=0)  # idempotent
    assert User.objects.get(username="alice").check_password("a-long-test-password")
    monkeypatch.setenv("DJANGO_MODERATOR_PASSWORD", "123")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_moderator", "bob", "--noinput", verbosity=0)
    assert not User.objects.filter(username="bob").exists()


def test_all_labels_of_one_person_can_be_found_and_excluded(mod_client, samples):
    vandal = User.objects.create_user("vandal", password="pw-for-tests-only")
    for sample in (samples["seven"], samples["one"]):
        services.correct_sample(sample=sample, label="x", source="api", author=vandal)
    services.correct_sample(sample=samples["zero"], label="0", source="api", author=teacher())
    listing = mod_client.get(f"{SAMPLES}?labelled_by={vandal.pk}")
    assert set(changelist_ids(listing)) == {samples["seven"].pk, samples["one"].pk}
    assert b">vandal</a>" in listing.content  # offered as a filter choice
    act(mod_client, f"{SAMPLES}?labelled_by={vandal.pk}", "exclude_from_training",
        [samples["seven"], samples["one"]])  # fmt: skip
    assert set(selectors.samples_trainable().values_list("pk", flat=True)) == {samples["zero"].pk}


def test_the_author_filters_offer_the_newest_authors_only(mod_client, samples, monkeypatch):
    from recognition.admin import filters

    monkeypatch.setattr(filters, "RECENT_AUTHORS", 2)
    people = [User.objects.create_user(name) for name in ("early", "middle", "late")]
    for person, sample in zip(people, ("seven", "one", "zero"), strict=True):
        services.correct_sample(sample=samples[sample], label="x", source="api", author=person)
    for url in (SAMPLES, "/admin/recognition/correction/"):
        listing = mod_client.get(url).content
        assert b">late</a>" in listing and b">middle</a>" in listing, url
        assert b">early</a>" not in listing, url
    # Each correction shows what was drawn beside what it was labelled.
    corrections = mod_client.get("/admin/recognition/correction/").content.decode()
    for sample in ("seven", "one", "zero"):
        assert f'src="{SAMPLES}{samples[sample].pk}/drawing.png"' in corrections
    # An older author is still one URL away.
    early = mod_client.get(f"{SAMPLES}?labelled_by={people[0].pk}")
    assert changelist_ids(early) == [samples["seven"].pk]


def test_moderator_opens_every_page(mod_client, samples, default_model):
    services.correct_sample(sample=samples["seven"], label="t", source="api", author=teacher())
    sample = samples["seven"]

    index = mod_client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/recognition/sample/dashboard/" in index.content

    listing = mod_client.get(SAMPLES)
    assert listing.status_code == 200
    assert set(changelist_ids(listing)) == {s.pk for s in samples.values()}
    assert f"{SAMPLES}{sample.pk}/drawing.png".encode() in listing.content
    for query in (
        "status__exact=unreviewed",
        "predicted=7",
        "label__exact=t",
        "disputed=yes",
        "disputed=no",
        "confidence=low",
        "confidence=certain",
        f"version={default_model.number}",
        "version=abc",  # a hand-edited URL: no filter, not a server error
        "labelled_by=abc",
        "version=%C2%B2",  # a superscript two: a digit to isdigit(), not to int()
        "created_at__gte=2000-01-01+00%3A00%3A00%2B00%3A00",
        "q=t",
        f"q={sample.pk}",
        "o=4",
    ):
        response = mod_client.get(f"{SAMPLES}?{query}")
        assert response.status_code == 200, query

    detail = mod_client.get(f"{SAMPLES}{sample.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "data:image/png;base64," in html  # the 28x28 glyph
    assert "7 -&gt; t" in html or "7 -> t" in html  # the correction history: old -> new
    assert re.search(r"7 \d+\.\d%", html)  # the prediction's top 5
    assert '<svg class="strokes-replay" viewBox="' in html and html.count("<animate ") == 1
    assert "Save" not in html  # read-only: changes go through the actions

    drawing = mod_client.get(f"{SAMPLES}{sample.pk}/drawing.png")
    assert drawing.status_code == 200 and drawing["Content-Type"] == "image/png"
    assert b"".join(drawing.streaming_content) == sample.image.open("rb").read()

    relabel_page = mod_client.post(
        SAMPLES, {"action": "relabel", "index": 0, ACTION_CHECKBOX_NAME: [sample.pk]}
    )
    assert relabel_page.status_code == 200
    assert relabel_page.content.count(b'name="label"') == 36

    for url in (
        "/admin/recognition/prediction/",
        "/admin/recognition/correction/",
        "/admin/recognition/correction/?source__exact=api",
        VERSIONS,
        f"{VERSIONS}{default_model.pk}/change/",
        "/admin/training/trainingrun/",
        f"/admin/training/trainingrun/{TrainingRun.objects.get().pk}/change/",
        f"{SAMPLES}dashboard/",
    ):
        assert mod_client.get(url).status_code == 200, url


def test_model_version_detail_shows_confusion_matrix_and_per_class(mod_client, default_model):
    detail = mod_client.get(f"{VERSIONS}{default_model.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert f"{VERSIONS}{default_model.pk}/confusion.png" in html
    assert html.count("<tr><td>") >= 36  # one row per class
    image = mod_client.get(f"{VERSIONS}{default_model.pk}/confusion.png")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(image.content)) as png:
        assert png.format == "PNG" and png.width >= 600


def test_relabel_is_an_audited_correction_that_queues_training(mod_client, moderator, samples):
    sample = samples["seven"]
    response = act(mod_client, SAMPLES, "relabel", [sample], label="t")
    assert response.status_code == 200
    assert "Relabelled 1 sample" in response.content.decode()

    correction = Correction.objects.get(sample=sample)
    assert correction.source == Correction.Source.ADMIN and correction.author == moderator
    assert (correction.previous_label, correction.label) == ("7", "t")
    assert correction.training_state == Correction.TrainingState.PENDING
    sample.refresh_from_db()
    assert sample.label == "t" and sample.status == Sample.Status.RELABELED
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.QUEUED

    # A moderator's label outranks a later user correction.
    services.correct_sample(sample=sample, label="7", source="api", author=teacher())
    sample.refresh_from_db()
    assert sample.label == "t"


def test_relabel_refuses_a_label_outside_the_36(mod_client, samples):
    response = act(mod_client, SAMPLES, "relabel", [samples["one"]], label="A")
    assert response.status_code == 200 and b"Choose one of the 36 labels" in response.content
    assert not Correction.objects.exists()


def test_confirm_records_who_checked_and_trains_nothing_new(mod_client, moderator, samples):
    sample = samples["seven"]
    act(mod_client, SAMPLES, "confirm", [sample])
    sample.refresh_from_db()
    assert sample.status == Sample.Status.CONFIRMED and sample.label == "7"
    correction = Correction.objects.get(sample=sample)
    assert correction.author == moderator and correction.source == "admin"
    assert correction.training_state == Correction.TrainingState.NOT_NEEDED
    assert not TrainingRun.objects.exists()
    act(mod_client, SAMPLES, "relabel", [sample], label="t")
    history = LogEntry.objects.filter(object_id=str(sample.pk), user=moderator)
    assert list(history.order_by("pk").values_list("change_message", flat=True)) == [
        "Confirmed the label",
        "Relabelled as 't'",
    ]


def test_retrain_now_queues_no_run_for_corrections_a_run_is_training(mod_client, samples):
    sample = samples["seven"]
    outcome = services.correct_sample(sample=sample, label="t", source="api", author=teacher())
    run = outcome.training_run
    services.corrections_take_pending(run=run, limit=10)  # as a claimed run does
    TrainingRun.objects.filter(pk=run.pk).update(status="running")
    response = act(mod_client, SAMPLES, "retrain", [sample])
    assert "The running training run is learning the 1 pending correction(s)." in (
        response.content.decode()
    )
    assert list(TrainingRun.objects.values_list("pk", flat=True)) == [run.pk]


def test_moderators_are_told_who_may_roll_back_and_why_runs_published_nothing(
    mod_client, default_model
):
    versions = mod_client.get("/admin/training/modelversion/").content.decode()
    assert "needs the training.change_modelversion permission" in versions
    TrainingRun.objects.create(
        parent_version=default_model, status="rejected", reason="forgetting would exceed 0.50"
    )
    runs = mod_client.get("/admin/training/trainingrun/").content.decode()
    assert "forgetting would exceed 0.50" in runs


def test_confirm_and_relabel_refuse_more_samples_than_they_may_label(
    mod_client, samples, monkeypatch
):
    from recognition.admin import actions

    monkeypatch.setattr(actions, "MAX_SAMPLES_PER_ACTION", 3)
    everything = list(samples.values())
    confirm = act(mod_client, SAMPLES, "confirm", everything)
    refused = "4 samples are selected; this action changes at most 3 at a time"
    assert refused in confirm.content.decode()
    relabel = act(mod_client, SAMPLES, "relabel", everything, label="t")
    assert refused in relabel.content.decode()
    assert not Correction.objects.exists()
    assert set(Sample.objects.values_list("status", flat=True)) == {Sample.Status.UNREVIEWED}
    act(mod_client, SAMPLES, "confirm", everything[:3])
    assert Correction.objects.count() == 3
    # An exclusion is one UPDATE: how a hostile labeller's many labels are undone at once.
    act(mod_client, SAMPLES, "exclude_from_training", everything)
    assert set(Sample.objects.values_list("status", flat=True)) == {Sample.Status.EXCLUDED}


def test_exclude_and_include_refuse_more_samples_than_they_may_change(
    mod_client, samples, monkeypatch
):
    from recognition.admin import actions

    monkeypatch.setattr(actions, "MAX_SAMPLES_PER_STATUS_CHANGE", 3)
    everything = list(samples.values())
    response = act(mod_client, SAMPLES, "exclude_from_training", everything)
    assert "4 samples are selected; this action changes at most 3" in response.content.decode()
    assert set(Sample.objects.values_list("status", flat=True)) == {Sample.Status.UNREVIEWED}
    assert not LogEntry.objects.exists()
    act(mod_client, SAMPLES, "exclude_from_training", everything[:3])
    assert Sample.objects.filter(status=Sample.Status.EXCLUDED).count() == 3
    assert LogEntry.objects.filter(change_message="Excluded from training").count() == 3


def test_one_anonymous_drawers_drawings_are_found_from_any_of_them(mod_client, default_model):
    from rest_framework.test import APIClient

    def drawn_by(client, drawing) -> int:
        body = {"image": base64.b64encode(draw_png(drawing)).decode(), "source": "page"}
        return client.post("/api/predictions/", body, format="json").json()["sample"]

    vandal, other = APIClient(), APIClient()
    theirs = [drawn_by(vandal, drawing) for drawing in (SEVEN, ONE, ZERO)]
    drawn_by(other, SEVEN)
    page = mod_client.get(f"{SAMPLES}{theirs[1]}/change/").content.decode()
    link = f"?drawer_of={theirs[1]}"
    assert link in page and "browser session" in page
    listed = mod_client.get(SAMPLES + link)
    assert sorted(changelist_ids(listed)) == theirs
    act(mod_client, SAMPLES + link, "exclude_from_training", Sample.objects.filter(pk__in=theirs))
    assert set(
        Sample.objects.filter(status=Sample.Status.EXCLUDED).values_list("pk", flat=True)
    ) == (set(theirs))


def test_a_samples_page_reviews_it_and_returns_to_the_queue(mod_client, samples):
    sample = samples["seven"]
    page = mod_client.get(f"{SAMPLES}{sample.pk}/change/").content.decode()
    for title in ("Confirm label", "Relabel", "Exclude from training"):
        assert title in page
    form = re.search(r'<form method="post" action="([^"]+)">.*?value="confirm"', page, re.S)
    response = mod_client.post(
        form.group(1), {"action": "confirm", ACTION_CHECKBOX_NAME: [sample.pk]}, follow=True
    )
    assert response.request["PATH_INFO"] == SAMPLES
    sample.refresh_from_db()
    assert sample.status == Sample.Status.CONFIRMED
    relabel = mod_client.post(
        form.group(1), {"action": "relabel", ACTION_CHECKBOX_NAME: [sample.pk]}
    )
    assert "Relabel samples" in relabel.content.decode()  # the choice of label, for this one
    excluded = act(mod_client, SAMPLES, "exclude_from_training", [sample])
    assert excluded.status_code == 200
    assert "Include in training" in mod_client.get(f"{SAMPLES}{sample.pk}/change/").content.decode()


def test_excluded_samples_are_never_replayed(mod_client, samples):
    for sample, label in zip(samples.values(), "7102", strict=True):
        services.correct_sample(sample=sample, label=label, source="api", author=teacher())
    excluded = samples["scribble"]
    response = act(mod_client, SAMPLES, "exclude_from_training", [excluded])
    assert "Excluded from training: 1 sample" in response.content.decode()
    excluded.refresh_from_db()
    assert excluded.status == Sample.Status.EXCLUDED
    assert LogEntry.objects.filter(object_id=str(excluded.pk)).exists()

    def replayed():
        return set(replay.replay_set(exclude_ids=(), per_class=100, every=10**9, seed=0).sample_ids)

    everyone = {s.pk for s in samples.values()}
    assert replayed() == everyone - {excluded.pk}
    assert excluded.pk not in replay.new_corrections_set(Correction.objects.all()).sample_ids

    act(mod_client, SAMPLES, "include_in_training", [excluded])
    excluded.refresh_from_db()
    assert excluded.status == Sample.Status.UNREVIEWED
    assert replayed() == everyone


def test_a_relabel_of_an_excluded_sample_is_kept_but_not_trained(mod_client, samples):
    sample = samples["one"]
    act(mod_client, SAMPLES, "exclude_from_training", [sample])
    label = relabel_of(sample)
    act(mod_client, SAMPLES, "relabel", [sample], label=label)
    sample.refresh_from_db()
    assert sample.status == Sample.Status.EXCLUDED and sample.label == label
    assert Correction.objects.get().training_state == Correction.TrainingState.NOT_NEEDED
    assert not TrainingRun.objects.exists()


def test_retrain_now_queues_one_run_for_pending_corrections(mod_client, samples):
    response = act(mod_client, SAMPLES, "retrain", [samples["one"]])
    assert "No correction is waiting" in response.content.decode()
    assert not TrainingRun.objects.exists()

    correct_the_one(samples)
    TrainingRun.objects.all().delete()  # as if the run that took it had failed
    response = act(mod_client, SAMPLES, "retrain", [samples["one"]])
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.QUEUED
    assert f"Training run {run.pk} is queued for 1 pending correction" in response.content.decode()


def test_dashboard_retrain_button_needs_no_selection(mod_client, samples):
    correct_the_one(samples)
    TrainingRun.objects.all().delete()
    dashboard = mod_client.get(f"{SAMPLES}dashboard/").content.decode()
    assert f'action="{SAMPLES}retrain/"' in dashboard
    assert mod_client.get(f"{SAMPLES}retrain/").status_code == 405
    response = mod_client.post(f"{SAMPLES}retrain/", follow=True)
    assert response.redirect_chain == [(f"{SAMPLES}dashboard/", 302)]
    run = TrainingRun.objects.get()
    assert f"Training run {run.pk} is queued" in response.content.decode()


def test_retrain_button_is_for_moderators_only(client, samples):
    viewer = User.objects.create_user("viewer", password="pw-for-tests-only", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sample"))
    client.force_login(viewer)
    correct_the_one(samples)
    TrainingRun.objects.all().delete()
    assert "Retrain now" not in client.get(f"{SAMPLES}dashboard/").content.decode()
    assert client.post(f"{SAMPLES}retrain/").status_code == 403
    actions = client.get(SAMPLES).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions if name] == ["download_zip"]
    assert not TrainingRun.objects.exists()


def test_review_queue_puts_disputed_and_least_confident_first(mod_client, samples):
    services.correct_sample(sample=samples["seven"], label="t", source="api", author=teacher())
    act(mod_client, SAMPLES, "confirm", [samples["zero"]])
    ids = changelist_ids(mod_client.get(SAMPLES))
    by_id = {row.pk: row for row in mod_client.get(SAMPLES).context["cl"].result_list}
    assert ids[0] == samples["seven"].pk  # disputed
    assert ids[-1] == samples["zero"].pk  # reviewed
    undisputed = [by_id[pk].confidence for pk in ids[1:-1]]
    assert undisputed == sorted(undisputed)  # then the least confident

    disputed = changelist_ids(mod_client.get(f"{SAMPLES}?disputed=yes"))
    assert disputed == [samples["seven"].pk]


def test_search_by_id_and_by_label(mod_client, samples):
    label = correct_the_one(samples)
    assert changelist_ids(mod_client.get(f"{SAMPLES}?q={samples['zero'].pk}")) == [
        samples["zero"].pk
    ]
    assert changelist_ids(mod_client.get(f"{SAMPLES}?q={label}")) == [samples["one"].pk]
    assert changelist_ids(mod_client.get(f"{SAMPLES}?q=nothing")) == []
    # A number too large for any id finds nothing, and is no server error.
    assert changelist_ids(mod_client.get(f"{SAMPLES}?q={10**25}")) == []


def test_download_selected_samples_as_a_zip(mod_client, samples):
    services.correct_sample(sample=samples["one"], label="1", source="api", author=teacher())
    services.correct_sample(sample=samples["zero"], label="o", source="api", author=teacher())
    response = mod_client.post(
        SAMPLES,
        {
            "action": "download_zip",
            "index": 0,
            ACTION_CHECKBOX_NAME: [s.pk for s in samples.values()],
        },
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response.streaming
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = set(archive.namelist())
    # Unlabelled samples are left out: filed under the model's guess they would teach its errors.
    assert names == {
        f"1/{samples['one'].pk}.png",
        f"o/{samples['zero'].pk}.png",
        "manifest.json",
    }
    assert archive.read(f"o/{samples['zero'].pk}.png") == samples["zero"].image.open("rb").read()


def test_moderator_cannot_delete_versions_activate_them_or_touch_users(
    mod_client, moderator, default_model
):
    assert mod_client.get(f"{VERSIONS}{default_model.pk}/delete/").status_code == 403
    assert mod_client.post(f"{VERSIONS}{default_model.pk}/delete/").status_code == 403
    listing = mod_client.get(VERSIONS).content.decode()
    assert "delete_selected" not in listing and 'value="activate"' not in listing
    act(mod_client, VERSIONS, "delete_selected", [default_model], post="yes")
    assert ModelVersion.objects.filter(pk=default_model.pk).exists()
    for url in (
        "/admin/auth/user/",
        f"/admin/auth/user/{moderator.pk}/change/",
        "/admin/auth/group/",
        "/admin/auth/user/add/",
    ):
        assert mod_client.get(url).status_code == 403, url
    assert mod_client.get(f"{SAMPLES}1/delete/").status_code == 403
    assert "delete_selected" not in mod_client.get(SAMPLES).content.decode()


def test_staff_activate_a_version_after_confirming(admin_client_, default_model):
    older = default_model
    newer = ModelVersion.objects.create(
        number=2, parent=older, weights=older.weights.name, sha256=older.sha256,
        anchors=older.anchors.name, architecture=older.architecture,
    )  # fmt: skip
    page = admin_client_.post(
        VERSIONS, {"action": "activate", "index": 0, ACTION_CHECKBOX_NAME: [newer.pk]}
    )
    assert page.status_code == 200 and b"Yes, activate v2" in page.content
    assert ModelVersion.objects.get(status="active") == older  # nothing happens unconfirmed

    act(admin_client_, VERSIONS, "activate", [newer], confirmed="yes")
    assert ModelVersion.objects.get(status="active") == newer
    act(admin_client_, VERSIONS, "activate", [older], confirmed="yes")  # rollback
    assert ModelVersion.objects.get(status="active") == older
    assert ModelVersion.objects.get(pk=newer.pk).status == ModelVersion.Status.RETIRED


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        SAMPLES,
        f"{SAMPLES}1/change/",
        f"{SAMPLES}1/drawing.png",
        f"{SAMPLES}dashboard/",
        f"{SAMPLES}retrain/",
        VERSIONS,
        f"{VERSIONS}1/confusion.png",
        "/admin/training/trainingrun/",
        "/admin/recognition/correction/",
    ],
)
def test_anonymous_users_are_sent_to_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_non_staff_users_are_sent_to_login(client, db):
    client.force_login(User.objects.create_user("drawer", password="pw-for-tests-only"))
    response = client.get(f"{SAMPLES}dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_dashboard_shows_versions_classes_confusions_and_pending(mod_client, samples):
    services.correct_sample(sample=samples["seven"], label="t", source="api", author=teacher())
    services.correct_sample(sample=samples["one"], label="1", source="api", author=teacher())
    response = mod_client.get(f"{SAMPLES}dashboard/")
    assert response.status_code == 200
    context = response.context
    assert context["versions"][0]["number"] == 1 and context["versions"][0]["active"]
    # One version without figures would be an empty axis: a sentence instead.
    assert context["accuracy_chart"] is None
    assert "No chart yet: it appears once two versions have figures" in response.content.decode()
    counts = dict(context["class_counts"])
    assert counts["t"]["to"] == 1 and counts["7"]["from"] == 1 and counts["1"]["labelled"] == 1
    assert context["user_confused_pairs"] == [{"predicted": "7", "true": "t", "count": 1}]
    assert context["model_confused_pairs"][0]["count"] > 0
    assert context["pending_count"] == 1
    on_corrected = context["on_corrected"]
    assert on_corrected["version"] == 1 and on_corrected["all"]["count"] == 2
    assert on_corrected["all"]["accuracy"] == pytest.approx(0.5)  # it reads the 1, not the t
    html = response.content.decode()
    assert "7 &rarr; t" in html and "Pending corrections: 1" in html
