"""Personal models, read-only, with a reset action."""

from django.contrib import admin, messages
from django.db.models.functions import Length
from django.urls import reverse
from django.utils.html import format_html

from training.admin import ReadOnlyAdmin
from training.selectors import version_json_of

from . import services
from .identity import writer_shown
from .models import PersonalModel


@admin.register(PersonalModel)
class PersonalModelAdmin(ReadOnlyAdmin):
    list_display = (
        "writer_shown",
        "drawings",
        "user",
        "corrections",
        "prototypes",
        "size",
        "model_version",
        "last_used_at",
        "updated_at",
    )
    list_select_related = ("user", "model_version")
    # Exact keys only: a partial search would spell out a session key letter by letter.
    search_fields = ("=writer", "user__username")
    fields = (*list_display, "created_at")
    readonly_fields = fields
    actions = ("reset",)

    @admin.display(description="writer", ordering="writer")
    def writer_shown(self, personal):
        return writer_shown(personal.writer)

    @admin.display(description="drawings")
    def drawings(self, personal):
        """All the writer's drawings in the review queue, found through one of them."""
        if not personal.sample_ids:
            return "-"
        url = reverse("admin:recognition_sample_changelist")
        return format_html('<a href="{}?drawer_of={}">all</a>', url, personal.sample_ids[-1])

    @admin.display(description="prototypes")
    def prototypes(self, personal):
        return len(personal.labels)

    @admin.display(description="size")
    def size(self, personal):
        return f"{(personal.features_bytes + len(personal.labels)) / 1024:.1f} KiB"

    def get_queryset(self, request):
        # A list shows the rows' size, not the rows (up to 64 KiB each), nor version JSON.
        return (
            super()
            .get_queryset(request)
            .defer("features", *version_json_of("model_version"))
            .annotate(features_bytes=Length("features"))
        )

    @admin.action(description="Reset: forget these writers' handwriting", permissions=["reset"])
    def reset(self, request, queryset):
        count = services.personal_models_reset(personal_models=queryset)
        self.message_user(request, f"Reset {count} personal models.", messages.SUCCESS)

    def has_reset_permission(self, request):
        return request.user.has_perm("writers.delete_personalmodel")
