"""The review actions on samples: confirm, relabel, exclude, include, retrain, download.

Each calls a service, so a moderator's label is an audited Correction and a status
change lands in the admin log.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from training import runs
from training.classes import DIGITS, LETTERS

from .. import exports, selectors, services
from ..models import LABEL_CHOICES, Sample

# Samples one confirm or relabel may label: each label is a correction and a forward
# pass in one transaction, which holds the database's write lock while it runs.
MAX_SAMPLES_PER_ACTION = 500
# Samples one exclude or include may change: a status UPDATE and an admin log row each.
MAX_SAMPLES_PER_STATUS_CHANGE = 10_000


class RelabelForm(forms.Form):
    label = forms.ChoiceField(choices=LABEL_CHOICES)


def _queued_message(outcomes) -> str:
    runs = sorted({o.training_run.pk for o in outcomes if o.training_run is not None})
    return f" Training run {', '.join(map(str, runs))} will learn it." if runs else ""


class SampleReviewActions:
    """The actions of the sample ModelAdmin, mixed into it."""

    actions = (
        "confirm",
        "relabel",
        "exclude_from_training",
        "include_in_training",
        "retrain",
        "download_zip",
    )

    def has_moderate_permission(self, request):
        return request.user.has_perm("recognition.moderate_sample")

    def _too_many(self, request, queryset, *, limit: int) -> bool:
        """Refuse (and say so) a selection larger than one action may change."""
        selected = queryset.count()
        if selected <= limit:
            return False
        self.message_user(
            request,
            f"{selected} samples are selected; this action changes at most {limit} at a "
            "time. Narrow the filter and try again.",
            messages.ERROR,
        )
        return True

    @admin.action(permissions=["moderate"], description="Confirm the current label")
    def confirm(self, request, queryset):
        if self._too_many(request, queryset, limit=MAX_SAMPLES_PER_ACTION):
            return
        samples = list(queryset)
        with transaction.atomic():
            outcomes = services.samples_confirm(samples=samples, moderator=request.user)
            self._log(request, samples, "Confirmed the label")
        self.message_user(
            request,
            f"Confirmed {len(outcomes)} sample(s).{_queued_message(outcomes)}",
            messages.SUCCESS,
        )

    @admin.action(permissions=["moderate"], description="Relabel to a chosen label")
    def relabel(self, request, queryset):
        if self._too_many(request, queryset, limit=MAX_SAMPLES_PER_ACTION):
            return None
        form = RelabelForm(request.POST if "label" in request.POST else None)
        if form.is_valid():
            label = form.cleaned_data["label"]
            samples = list(queryset)
            with transaction.atomic():
                outcomes = services.samples_relabel(
                    samples=samples, label=label, moderator=request.user
                )
                self._log(request, samples, f"Relabelled as {label!r}")
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
        if self._too_many(request, queryset, limit=MAX_SAMPLES_PER_STATUS_CHANGE):
            return
        # The change and its audit log land together, or neither does.
        with transaction.atomic():
            samples = list(queryset.select_related(None).only("pk"))
            changed = service(samples=Sample.objects.filter(pk__in=[s.pk for s in samples]))
            self._log(request, samples, log_message)
        self.message_user(request, f"{log_message}: {changed} sample(s).", messages.SUCCESS)

    def _log(self, request, samples, message: str):
        """One admin history entry per sample, in one INSERT."""
        LogEntry.objects.log_actions(
            user_id=request.user.pk, queryset=samples, action_flag=CHANGE, change_message=message
        )

    @admin.action(permissions=["moderate"], description="Retrain now on all pending corrections")
    def retrain(self, request, queryset):
        # A run always takes every pending correction, so the selection only
        # serves to reach this action from the list.
        self.request_training(request)

    def request_training(self, request):
        """Queue a run for every pending correction no run is training now, and say so (or
        that none waits)."""
        pending = selectors.corrections_awaiting_run().count()
        if not pending:
            training = selectors.corrections_pending().count()
            waiting = (
                f"The running training run is learning the {training} pending correction(s)."
                if training
                else "No correction is waiting for training."
            )
            self.message_user(request, waiting, messages.WARNING)
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
