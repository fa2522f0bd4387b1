"""Personal models, read-only, with a reset action."""

from django.contrib import admin, messages

from training.admin import ReadOnlyAdmin

from . import services
from .models import PersonalModel


@admin.register(PersonalModel)
class PersonalModelAdmin(ReadOnlyAdmin):
    list_display = (
        "writer",
        "user",
        "corrections",
        "prototypes",
        "size",
        "model_version",
        "last_used_at",
        "updated_at",
    )
    list_select_related = ("user", "model_version")
    search_fields = ("writer", "user__username")
    fields = (*list_display, "created_at")
    readonly_fields = fields
    actions = ("reset",)

    @admin.display(description="prototypes")
    def prototypes(self, personal):
        return len(personal.labels)

    @admin.display(description="size")
    def size(self, personal):
        return f"{personal.size_bytes / 1024:.1f} KiB"

    @admin.action(description="Reset: forget these writers' handwriting", permissions=["reset"])
    def reset(self, request, queryset):
        count = services.personal_models_reset(personal_models=queryset)
        self.message_user(request, f"Reset {count} personal models.", messages.SUCCESS)

    def has_reset_permission(self, request):
        return request.user.has_perm("writers.delete_personalmodel")
