"""The audit trail: predictions and corrections, as lists of their own and inside a sample.

Nobody edits or deletes them here.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from recognizer_site.admin_search import IdSearchMixin
from training.admin import ReadOnlyAdmin, RecentVersionsFilter
from training.classes import CLASSES
from training.selectors import version_json_of

from ..models import Correction, Prediction
from .filters import RecentAuthorsFilter


def drawing_thumbnail(sample_id: int):
    """A sample's drawing as a list column shows it, loaded as the row scrolls into view."""
    return format_html(
        '<img src="{}" alt="sample {}" width="40" height="40" loading="lazy" class="drawing">',
        reverse("admin:recognition_sample_drawing", args=[sample_id]),
        sample_id,
    )


class CorrectionChangeColumn:
    @admin.display(description="old -> new")
    def change(self, correction):
        return f"{correction.previous_label or '?'} -> {correction.label}"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ConfidencePercent:
    @admin.display(description="confidence", ordering="confidence")
    def confidence_percent(self, prediction):
        return f"{prediction.confidence:.1%}"


class PredictionInline(ConfidencePercent, ReadOnlyInline):
    model = Prediction
    fields = ("created_at", "model_version", "label", "personal", "confidence_percent", "top_k")
    readonly_fields = fields
    verbose_name_plural = "predictions (newest first)"

    @admin.display(description="top 5")
    def top_k(self, prediction):
        best = sorted(enumerate(prediction.probabilities), key=lambda item: -item[1])[:5]
        return format_html_join(", ", "{} {}", ((CLASSES[index], f"{p:.1%}") for index, p in best))


class CorrectionInline(CorrectionChangeColumn, ReadOnlyInline):
    model = Correction
    fields = ("created_at", "author", "source", "change", "training_state")
    readonly_fields = fields
    verbose_name_plural = "corrections (newest first)"


class AuditLogAdmin(IdSearchMixin, ReadOnlyAdmin):
    id_search_field = "sample_id"  # a search by number finds a sample's history

    @admin.display(description="sample", ordering="sample")
    def sample_link(self, obj):
        url = reverse("admin:recognition_sample_change", args=[obj.sample_id])
        return format_html('<a href="{}">{}</a>', url, obj.sample_id)


@admin.register(Prediction)
class PredictionAdmin(ConfidencePercent, AuditLogAdmin):
    list_display = (
        "id",
        "sample_link",
        "label",
        "confidence_percent",
        "model_version",
        "created_at",
    )
    list_filter = (("model_version", RecentVersionsFilter), "label", "created_at")
    list_select_related = ("model_version",)
    search_fields = ("label__exact",)

    def get_queryset(self, request):
        # The list shows neither the probabilities nor its version's JSON; a page loads them.
        deferred = version_json_of("model_version")
        return super().get_queryset(request).defer("probabilities", *deferred)


@admin.register(Correction)
class CorrectionAdmin(CorrectionChangeColumn, AuditLogAdmin):
    """Every label a person gave: filter by author to find and undo one person's labels."""

    list_display = (
        "id",
        "sample_link",
        "thumbnail",
        "change",
        "author",
        "source",
        "training_state",
        "created_at",
    )
    list_filter = (
        "source",
        "training_state",
        ("author", RecentAuthorsFilter),
        "label",
        "created_at",
    )
    list_select_related = ("author",)
    search_fields = ("label__exact", "author__username")

    class Media:
        css = {"all": ["css/admin.css"]}

    @admin.display(description="drawing")
    def thumbnail(self, correction):
        """What was drawn, beside what it was labelled: a careless label shows at a glance."""
        return drawing_thumbnail(correction.sample_id)
