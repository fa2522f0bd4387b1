"""Model versions (with their confusion matrix and rollback) and training runs, read-only."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from recognizer_site.paginators import EstimatedCountPaginator

from . import charts, selectors, services
from .classes import CLASSES
from .models import ModelVersion, TrainingRun
from .selectors import version_json_of


def _percent(value) -> str:
    return "-" if value is None else f"{value:.2%}"


# A run's reason in its list row: the whole of it is on the run's page.
OUTCOME_CHARS = 90
# Filters list this many of the newest versions: a busy site makes thousands.
RECENT_VERSIONS = 20


class RecentVersionsFilter(admin.RelatedFieldListFilter):
    """A model version filter offering only the newest versions; older ones are reached by URL."""

    def field_choices(self, field, request, model_admin):
        versions = ModelVersion.objects.order_by("-number").only("number", "status")
        versions = versions[:RECENT_VERSIONS]
        return [(version.pk, str(version)) for version in versions]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records nobody adds, edits or deletes here; custom actions are the only writers."""

    # Long lists: no count of the whole table, and an estimated count on PostgreSQL.
    show_full_result_count = False
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "status",
        "parent",
        "overall",
        "digits",
        "letters",
        "forgetting",
        "trained_on",
        "pinned",
        "pruned_at",
        "created_at",
    )
    list_filter = ("status", "pinned")
    list_per_page = 50  # as the samples: rendering a row costs more than reading it
    list_select_related = ("parent",)
    actions = ("activate", "pin", "unpin")
    fields = (
        "number",
        "status",
        "parent",
        "overall",
        "digits",
        "letters",
        "forgetting",
        "own_evaluation",
        "trained_on",
        "created_at",
        "activated_at",
        "architecture",
        "sha256",
        "base",
        "pinned",
        "pruned_at",
        "training_info",
        "confusion_matrix",
        "per_class",
    )
    readonly_fields = fields

    def has_activate_permission(self, request):
        return request.user.has_perm("training.change_modelversion")

    def changelist_view(self, request, extra_context=None):
        if not self.has_activate_permission(request):
            # A moderator who sees a bad version must know whom to ask.
            self.message_user(
                request,
                "Activating a version (rolling back) needs the training.change_modelversion "
                "permission, which moderators do not have: ask an operator.",
                messages.INFO,
            )
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        # A list reads its figures from the query, not from each version's metrics (and
        # its parent's): a confusion matrix each. A version's page loads its own.
        versions = super().get_queryset(request).defer("metrics", *version_json_of("parent"))
        return selectors.versions_annotate_gate_scores(versions)

    # Every version by one measure, as on the dashboard: see selectors.MEASURE.
    @admin.display(description="overall, gate's fixed set")
    def overall(self, version):
        return _percent(selectors.version_gate_scores(version)["overall"])

    @admin.display(description="digits, gate's fixed set")
    def digits(self, version):
        return _percent(selectors.version_gate_scores(version)["digits"])

    @admin.display(description="letters, gate's fixed set")
    def letters(self, version):
        return _percent(selectors.version_gate_scores(version)["letters"])

    @admin.display(description="own evaluation")
    def own_evaluation(self, version):
        """What the version recorded when it was made: a pretrained one, its pretraining report."""
        metrics = version.metrics
        if metrics.get("overall") is None:
            return "not recorded"
        if version.training_info.get("kind") == "pretrain":
            images = "pretraining held-out images"
        else:
            images = "images of the gate's fixed set"
        return f"{_percent(metrics['overall'])} of {metrics.get('count', '?')} {images}"

    @admin.display(description="forgetting")
    def forgetting(self, version):
        """Accuracy lost on the fixed evaluation set versus the parent (fine-tunes only)."""
        return _percent(version.recorded_forgetting)

    @admin.display(description="trained on")
    def trained_on(self, version):
        if version.training_info.get("kind") == "pretrain":
            return f"{sum(version.training_info.get('sources', {}).values())} images"
        if version.trained_sample_ids:
            return f"{len(version.trained_sample_ids)} corrected samples"
        return "-"

    @admin.display(description="confusion matrix (true down, predicted across)")
    def confusion_matrix(self, version):
        if "confusion" not in version.metrics:
            return "not recorded"
        return format_html(
            '<img src="{}" alt="confusion matrix of v{}" width="900">',
            reverse("admin:training_modelversion_confusion", args=[version.pk]),
            version.number,
        )

    @admin.display(description="per class")
    def per_class(self, version):
        confusion = version.metrics.get("confusion")
        accuracy = version.metrics.get("per_class", {})
        if not confusion:
            return "not recorded"
        rows = []
        for index, label in enumerate(CLASSES):
            row = confusion[index]
            wrong = [(count, CLASSES[p]) for p, count in enumerate(row) if p != index and count]
            worst = max(wrong) if wrong else None
            rows.append(
                {
                    "label": label,
                    "count": sum(row),
                    "accuracy": _percent(accuracy.get(label)),
                    "worst": f"{worst[1]} ({worst[0]})" if worst else "-",
                }
            )
        return render_to_string("admin/training/modelversion/per_class.html", {"rows": rows})

    @admin.action(permissions=["activate"], description="Pin: never prune their weights")
    def pin(self, request, queryset):
        self._set_pinned(request, queryset, pinned=True)

    @admin.action(permissions=["activate"], description="Unpin: pruning may take them when old")
    def unpin(self, request, queryset):
        self._set_pinned(request, queryset, pinned=False)

    def _set_pinned(self, request, queryset, *, pinned: bool):
        versions = list(queryset)
        services.model_versions_pin(versions=versions, pinned=pinned)
        for version in versions:
            self.log_change(request, version, "Pinned" if pinned else "Unpinned")
        word = "Pinned" if pinned else "Unpinned"
        self.message_user(request, f"{word} {len(versions)} version(s).", messages.SUCCESS)

    @admin.action(permissions=["activate"], description="Activate (roll back or forward)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return None
        version = queryset.get()
        if request.POST.get("confirmed") == "yes":
            try:
                services.model_version_activate(version=version, user=request.user)
            except services.VersionPruned as pruned:
                self.message_user(request, str(pruned), messages.ERROR)
                return None
            self.message_user(
                request, f"v{version.number} is now the active model.", messages.SUCCESS
            )
            return None
        return TemplateResponse(
            request,
            "admin/training/modelversion/activate.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Activate v{version.number}?",
                "opts": self.opts,
                "version": version,
                "active": selectors.version_active(),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    def get_urls(self):
        return [
            path(
                "<int:object_id>/confusion.png",
                self.admin_site.admin_view(self.confusion_view),
                name="training_modelversion_confusion",
            ),
            *super().get_urls(),
        ]

    def confusion_view(self, request, object_id):
        version = self.get_object(request, object_id)
        if version is None or "confusion" not in version.metrics:
            raise Http404
        if not self.has_view_permission(request, version):
            raise PermissionDenied
        png = charts.confusion_matrix_png(
            version.metrics["confusion"], title=f"v{version.number} on its evaluation set"
        )
        return HttpResponse(png, content_type="image/png")


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "status",
        "outcome",
        "failure_kind",
        "parent_version",
        "result_version",
        "attempts",
        "progress",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "failure_kind")
    list_select_related = ("parent_version", "result_version")
    readonly_fields = ("correction_count",)

    def get_queryset(self, request):
        # Each run's two versions: their names, not their confusion matrices.
        versions = (*version_json_of("parent_version"), *version_json_of("result_version"))
        return super().get_queryset(request).defer(*versions)

    @admin.display(description="why")
    def outcome(self, run):
        """Why a run published nothing: the gate's reason or the error, in a line."""
        why = run.reason or run.error
        return why if len(why) <= OUTCOME_CHARS else why[: OUTCOME_CHARS - 1] + "…"

    @admin.display(description="corrections")
    def correction_count(self, run):
        return run.corrections.count()
