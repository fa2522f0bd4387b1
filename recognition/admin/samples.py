"""The review queue of samples: its list, a sample's page, and the moderation dashboard."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from PIL import Image

from recognizer_site.admin_search import IdSearchMixin
from recognizer_site.paginators import EstimatedCountPaginator
from training import charts
from writers.identity import writer_shown

from .. import dashboard, selectors
from ..images import encode_png
from ..models import Sample
from ..views import drawing_response
from .actions import SampleReviewActions
from .audit import CorrectionInline, PredictionInline, drawing_thumbnail
from .filters import (
    ConfidenceBandFilter,
    DisagreementFilter,
    LabelledByFilter,
    ModelVersionFilter,
    PredictedLabelFilter,
    ProposedFilter,
    SameDrawerFilter,
)
from .strokes import strokes_replay_html


@admin.register(Sample)
class SampleAdmin(IdSearchMixin, SampleReviewActions, admin.ModelAdmin):
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
        SameDrawerFilter,
        "created_at",
    )
    search_fields = ("label__exact",)  # and ids: IdSearchMixin
    search_help_text = "A sample id, or a label (searches the current label)."
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("drawing", "seen_by_model", "strokes_replay")}),
        (
            "Label",
            {"fields": ("label", "status", "predicted", "confidence_percent", "model_version")},
        ),
        (
            "Origin",
            {"fields": ("drawer", "source", "classes", "user", "created_at", "width", "height")},
        ),
    )
    readonly_fields = (
        "drawer",
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

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # A sample's page offers the review actions on itself (its template shows them).
        if obj is not None:
            status = (
                ("include_in_training", "Include in training")
                if obj.status == Sample.Status.EXCLUDED
                else ("exclude_from_training", "Exclude from training")
            )
            context["review_actions"] = [
                ("confirm", "Confirm label"),
                ("relabel", "Relabel"),
                status,
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_ordering(self, request):
        # Expressions (nulls last), which the `ordering` attribute's checks reject.
        return selectors.REVIEW_QUEUE_ORDERING

    # Samples come only from predictions, and change only through the review actions.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    # --- columns and fields ------------------------------------------------

    def _drawing_url(self, sample):
        return reverse("admin:recognition_sample_drawing", args=[sample.pk])

    @admin.display(description="drawing")
    def thumbnail(self, sample):
        return drawing_thumbnail(sample.pk)

    @admin.display(description="drawer")
    def drawer(self, sample):
        who = writer_shown(sample.writer) if sample.writer else sample.user or "no session"
        everything = reverse("admin:recognition_sample_changelist") + f"?drawer_of={sample.pk}"
        return format_html('{} (<a href="{}">all their drawings</a>)', who, everything)

    @admin.display(description="proposed", ordering="-proposed")
    def awaits_review(self, sample):
        """A correction from someone the shared model does not learn from without review;
        words, not Django's red cross on every other row, which reads as an error."""
        return "awaits review" if sample.proposed else ""

    @admin.display(description="predicted", ordering="predicted_label")
    def predicted(self, sample):
        # A personal model's answer is what its writer taught, not the shared model's reading.
        if sample.predicted_personally:
            return f"{sample.predicted_label} (personal)"
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
        return strokes_replay_html(sample.strokes)

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
        self.request_training(request)
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
