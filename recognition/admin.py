"""Moderation: the review queue of samples, their history, and the dashboard.

Samples are read-only forms here: every label or status change goes through an
action that calls a service, so moderator labels are audited Corrections that
train the model like any other, and status changes land in the admin log.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from PIL import Image

from recognizer_site.paginators import EstimatedCountPaginator
from training import charts, runs
from training import selectors as training_selectors
from training.admin import RECENT_VERSIONS, ReadOnlyAdmin, RecentVersionsFilter
from training.classes import CLASSES, DIGITS, LETTERS

from . import dashboard, exports, selectors, services
from .images import encode_png
from .models import LABEL_CHOICES, Correction, Prediction, Sample
from .views import drawing_response


class PredictedLabelFilter(admin.SimpleListFilter):
    title = "predicted label"
    parameter_name = "predicted"

    def lookups(self, request, model_admin):
        return LABEL_CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(predicted_label=self.value()) if self.value() else queryset


class DisagreementFilter(admin.SimpleListFilter):
    title = "disagreement"
    parameter_name = "disputed"

    def lookups(self, request, model_admin):
        return [("yes", "Label differs from prediction"), ("no", "Label agrees or no label")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(disputed=self.value() == "yes")
        return queryset


class ConfidenceBandFilter(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"

    def lookups(self, request, model_admin):
        return [
            (band, f"{band} ({low:.0%}-{min(high, 1):.0%})")
            for band, (low, high) in selectors.CONFIDENCE_BANDS.items()
        ]

    def queryset(self, request, queryset):
        if self.value() in selectors.CONFIDENCE_BANDS:
            return selectors.samples_in_confidence_band(queryset, band=self.value())
        return queryset


class ModelVersionFilter(admin.SimpleListFilter):
    """The newest versions only: thousands accumulate; older ones are reached by URL."""

    title = "model version"
    parameter_name = "version"

    def lookups(self, request, model_admin):
        numbers = training_selectors.version_numbers_newest(limit=RECENT_VERSIONS)
        return [(str(number), f"v{number}") for number in numbers]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(model_version_number=self.value())
        return queryset


class LabelledByFilter(admin.SimpleListFilter):
    """Every sample one person labelled: how a careless or hostile labeller's work is undone."""

    title = "labelled by"
    parameter_name = "labelled_by"

    def lookups(self, request, model_admin):
        return [(str(user.pk), user.get_username()) for user in selectors.correction_authors()]

    def queryset(self, request, queryset):
        if self.value() and self.value().isdigit():
            return selectors.samples_labelled_by(queryset, author_id=int(self.value()))
        return queryset


# Stored strokes may predate their validation: the page draws only what makes sense.
_DRAWABLE_COORDINATE = 1e7


def _drawable_strokes(raw) -> list[list[tuple[float, float]]]:
    """The (x, y) of every point that is a list of finite, bounded numbers; nothing else."""
    strokes = []
    for stroke in raw if isinstance(raw, list) else []:
        points = [
            (float(point[0]), float(point[1]))
            for point in (stroke if isinstance(stroke, list) else [])
            if isinstance(point, list)
            and len(point) >= 2
            and all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and abs(v) <= _DRAWABLE_COORDINATE
                for v in point[:2]
            )
        ]
        if points:
            strokes.append(points)
    return strokes


def _queued_message(outcomes) -> str:
    runs = sorted({o.training_run.pk for o in outcomes if o.training_run is not None})
    return f" Training run {', '.join(map(str, runs))} will learn it." if runs else ""


class ProposedFilter(admin.SimpleListFilter):
    title = "proposed"
    parameter_name = "proposed"

    def lookups(self, request, model_admin):
        return [("yes", "A correction awaits review"), ("no", "Nothing awaits review")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(proposed=self.value() == "yes")
        return queryset


class RelabelForm(forms.Form):
    label = forms.ChoiceField(choices=LABEL_CHOICES)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PredictionInline(ReadOnlyInline):
    model = Prediction
    fields = ("created_at", "model_version", "label", "confidence_percent", "top_k")
    readonly_fields = fields
    verbose_name_plural = "predictions (newest first)"

    @admin.display(description="confidence")
    def confidence_percent(self, prediction):
        return f"{prediction.confidence:.1%}"

    @admin.display(description="top 5")
    def top_k(self, prediction):
        best = sorted(enumerate(prediction.probabilities), key=lambda item: -item[1])[:5]
        return format_html_join(", ", "{} {}", ((CLASSES[index], f"{p:.1%}") for index, p in best))


class CorrectionInline(ReadOnlyInline):
    model = Correction
    fields = ("created_at", "author", "source", "change", "training_state")
    readonly_fields = fields
    verbose_name_plural = "corrections (newest first)"

    @admin.display(description="old -> new")
    def change(self, correction):
        return f"{correction.previous_label or '?'} -> {correction.label}"


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    class Media:
        css = {"all": ["css/admin.css"]}

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_display = (
        "id",
        "thumbnail",
        "predicted",
        "confidence_percent",
        "label",
        "awaits_review",
        "status",
        "model_version",
        "created_at",
    )
    list_display_links = ("id", "thumbnail")
    list_filter = (
        ProposedFilter,
        "status",
        PredictedLabelFilter,
        "label",
        DisagreementFilter,
        ConfidenceBandFilter,
        ModelVersionFilter,
        LabelledByFilter,
        "created_at",
    )
    search_fields = ("id__exact", "label__exact")
    search_help_text = "A sample id, or a label (searches the current label)."
    list_per_page = 50
    actions = (
        "confirm",
        "relabel",
        "exclude_from_training",
        "include_in_training",
        "retrain",
        "download_zip",
    )
    fieldsets = (
        (None, {"fields": ("drawing", "seen_by_model", "strokes_replay")}),
        (
            "Label",
            {"fields": ("label", "status", "predicted", "confidence_percent", "model_version")},
        ),
        ("Origin", {"fields": ("source", "classes", "user", "created_at", "width", "height")}),
    )
    readonly_fields = (
        "drawing",
        "seen_by_model",
        "strokes_replay",
        "label",
        "status",
        "predicted",
        "confidence_percent",
        "model_version",
        "source",
        "classes",
        "user",
        "created_at",
        "width",
        "height",
    )
    inlines = (PredictionInline, CorrectionInline)

    def get_queryset(self, request):
        return selectors.sample_list()

    def get_ordering(self, request):
        # Expressions (nulls last), which the `ordering` attribute's checks reject.
        return selectors.REVIEW_QUEUE_ORDERING

    # Samples come only from predictions, and change only through the actions below.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_moderate_permission(self, request):
        return request.user.has_perm("recognition.moderate_sample")

    # --- columns and fields ------------------------------------------------

    def _drawing_url(self, sample):
        return reverse("admin:recognition_sample_drawing", args=[sample.pk])

    @admin.display(description="drawing")
    def thumbnail(self, sample):
        return format_html(
            '<img src="{}" alt="sample {}" width="40" height="40" loading="lazy" class="drawing">',
            self._drawing_url(sample),
            sample.pk,
        )

    @admin.display(description="proposed", boolean=True, ordering="-proposed")
    def awaits_review(self, sample):
        """A correction from someone the shared model does not learn from without review."""
        return sample.proposed

    @admin.display(description="predicted", ordering="predicted_label")
    def predicted(self, sample):
        return sample.predicted_label

    @admin.display(description="confidence", ordering="confidence")
    def confidence_percent(self, sample):
        return "-" if sample.confidence is None else f"{sample.confidence:.1%}"

    @admin.display(description="model", ordering="model_version_number")
    def model_version(self, sample):
        return f"v{sample.model_version_number}"

    @admin.display(description="drawing")
    def drawing(self, sample):
        return format_html(
            '<img src="{}" alt="sample {}" width="280" height="280" class="drawing">',
            self._drawing_url(sample),
            sample.pk,
        )

    @admin.display(description="what the model saw (28x28)")
    def seen_by_model(self, sample):
        url = charts.data_url(encode_png(Image.fromarray(sample.glyph_array(), mode="L")))
        return render_to_string("admin/recognition/sample/seen_by_model.html", {"url": url})

    @admin.display(description="strokes")
    def strokes_replay(self, sample):
        strokes = _drawable_strokes(sample.strokes)
        if not strokes:
            return "not recorded" if not sample.strokes else "recorded, but not drawable"
        # Strokes are in the page's CSS pixels, not the image's: frame their own
        # bounding box, squared, with a margin.
        xs = [point[0] for stroke in strokes for point in stroke]
        ys = [point[1] for stroke in strokes for point in stroke]
        size = max(max(xs) - min(xs), max(ys) - min(ys), 1.0) * 1.3
        left = (min(xs) + max(xs) - size) / 2
        top = (min(ys) + max(ys) - size) / 2
        paths = [
            " ".join(
                f"{'M' if i == 0 else 'L'}{point[0]:.1f},{point[1]:.1f}"
                for i, point in enumerate(stroke)
            )
            for stroke in strokes
        ]
        return render_to_string(
            "admin/recognition/sample/strokes_replay.html",
            {
                "view_box": f"{left:.1f} {top:.1f} {size:.1f} {size:.1f}",
                "width": f"{size / 24:.1f}",
                "strokes": [{"d": d, "begin": f"{0.6 * i:.1f}"} for i, d in enumerate(paths)],
            },
        )

    # --- actions -------------------------------------------------------------

    @admin.action(permissions=["moderate"], description="Confirm the current label")
    def confirm(self, request, queryset):
        outcomes = services.samples_confirm(samples=list(queryset), moderator=request.user)
        self.message_user(
            request,
            f"Confirmed {len(outcomes)} sample(s).{_queued_message(outcomes)}",
            messages.SUCCESS,
        )

    @admin.action(permissions=["moderate"], description="Relabel to a chosen label")
    def relabel(self, request, queryset):
        form = RelabelForm(request.POST if "label" in request.POST else None)
        if form.is_valid():
            label = form.cleaned_data["label"]
            outcomes = services.samples_relabel(
                samples=list(queryset), label=label, moderator=request.user
            )
            self.message_user(
                request,
                f"Relabelled {len(outcomes)} sample(s) as {label!r}.{_queued_message(outcomes)}",
                messages.SUCCESS,
            )
            return None
        return TemplateResponse(
            request,
            "admin/recognition/sample/relabel.html",
            {
                **self.admin_site.each_context(request),
                "title": "Relabel samples",
                "opts": self.opts,
                "samples": queryset,
                "form": form,
                "digits": DIGITS,
                "letters": LETTERS,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "drawing_url": "admin:recognition_sample_drawing",
            },
        )

    @admin.action(permissions=["moderate"], description="Exclude from training")
    def exclude_from_training(self, request, queryset):
        self._set_status(request, queryset, services.samples_exclude, "Excluded from training")

    @admin.action(permissions=["moderate"], description="Include in training again")
    def include_in_training(self, request, queryset):
        self._set_status(request, queryset, services.samples_include, "Included in training again")

    def _set_status(self, request, queryset, service, log_message):
        samples = list(queryset)
        changed = service(samples=Sample.objects.filter(pk__in=[s.pk for s in samples]))
        for sample in samples:
            self.log_change(request, sample, log_message)
        self.message_user(request, f"{log_message}: {changed} sample(s).", messages.SUCCESS)

    @admin.action(permissions=["moderate"], description="Retrain now on all pending corrections")
    def retrain(self, request, queryset):
        # A run always takes every pending correction, so the selection only
        # serves to reach this action from the list.
        self._request_training(request)

    def _request_training(self, request):
        pending = selectors.corrections_pending().count()
        if not pending:
            self.message_user(request, "No correction is waiting for training.", messages.WARNING)
            return
        run = runs.training_run_request()
        self.message_user(
            request,
            f"Training run {run.pk} is queued for {pending} pending correction(s).",
            messages.SUCCESS,
        )

    @admin.action(permissions=["view"], description="Download labelled samples as a zip")
    def download_zip(self, request, queryset):
        files = exports.image_folder_files(queryset.order_by("pk"))
        response = StreamingHttpResponse(exports.zip_stream(files), content_type="application/zip")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="samples-{stamp}.zip"'
        return response

    # --- extra pages ----------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="recognition_sample_dashboard"),
            path("retrain/", wrap(self.retrain_view), name="recognition_sample_retrain"),
            path(
                "<int:object_id>/drawing.png",
                wrap(self.drawing_view),
                name="recognition_sample_drawing",
            ),
            *super().get_urls(),
        ]

    def drawing_view(self, request, object_id):
        """The stored drawing; drawings are user data, so they are served behind the admin."""
        sample = self.get_object(request, object_id)
        if sample is None:
            raise Http404
        if not self.has_view_permission(request, sample):
            raise PermissionDenied
        return drawing_response(sample)

    @method_decorator(require_POST)
    def retrain_view(self, request):
        """The dashboard's "retrain now" button: the action, without selecting samples."""
        if not self.has_moderate_permission(request):
            raise PermissionDenied
        self._request_training(request)
        return redirect("admin:recognition_sample_dashboard")

    def dashboard_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/recognition/dashboard.html",
            {
                **self.admin_site.each_context(request),
                "title": "Moderation dashboard",
                "opts": self.opts,
                **dashboard.dashboard_data(),
            },
        )


class AuditLogAdmin(ReadOnlyAdmin):
    """Predictions and corrections are the audit trail: nobody edits or deletes them here."""

    @admin.display(description="sample", ordering="sample")
    def sample_link(self, obj):
        url = reverse("admin:recognition_sample_change", args=[obj.sample_id])
        return format_html('<a href="{}">{}</a>', url, obj.sample_id)


@admin.register(Prediction)
class PredictionAdmin(AuditLogAdmin):
    list_display = ("id", "sample_link", "label", "confidence", "model_version", "created_at")
    list_filter = (("model_version", RecentVersionsFilter), "label", "created_at")
    list_select_related = ("model_version",)
    search_fields = ("sample__id__exact", "label__exact")


@admin.register(Correction)
class CorrectionAdmin(AuditLogAdmin):
    """Every label a person gave: filter by author to find and undo one person's labels."""

    list_display = (
        "id",
        "sample_link",
        "change",
        "author",
        "source",
        "training_state",
        "created_at",
    )
    list_filter = (
        "source",
        "training_state",
        ("author", admin.RelatedOnlyFieldListFilter),
        "label",
        "created_at",
    )
    list_select_related = ("author",)
    search_fields = ("sample__id__exact", "label__exact", "author__username")

    @admin.display(description="old -> new")
    def change(self, correction):
        return f"{correction.previous_label or '?'} -> {correction.label}"
