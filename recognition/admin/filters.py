"""The review queue's filters: what a moderator narrows the samples by."""

from django.contrib import admin

from training import selectors as training_selectors
from training.admin import RECENT_VERSIONS

from .. import selectors
from ..models import LABEL_CHOICES

# Authors a filter offers: those of the newest labels.
RECENT_AUTHORS = 30


class YesNoFilter(admin.SimpleListFilter):
    """Samples whose boolean column ``field`` is true (yes) or false (no)."""

    field = yes = no = ""

    def lookups(self, request, model_admin):
        return [("yes", self.yes), ("no", self.no)]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(**{self.field: self.value() == "yes"})
        return queryset


class ProposedFilter(YesNoFilter):
    title = "proposed"
    parameter_name = "proposed"
    field = "proposed"
    yes = "A correction awaits review"
    no = "Nothing awaits review"


class PredictedLabelFilter(admin.SimpleListFilter):
    title = "predicted label"
    parameter_name = "predicted"

    def lookups(self, request, model_admin):
        return LABEL_CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(predicted_label=self.value()) if self.value() else queryset


class DisagreementFilter(YesNoFilter):
    title = "disagreement"
    parameter_name = "disputed"
    field = "disputed"
    yes = "Label differs from prediction"
    no = "Label agrees or no label"


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
        if self.value() and self.value().isdecimal():
            return queryset.filter(model_version_number=int(self.value()))
        return queryset


def recent_author_choices() -> list[tuple[int, str]]:
    """The newest labels' authors as filter choices; the others are reached by URL."""
    authors = selectors.correction_authors_recent(limit=RECENT_AUTHORS)
    return [(user.pk, user.get_username()) for user in authors]


class RecentAuthorsFilter(admin.RelatedFieldListFilter):
    """An author filter offering the newest labels' authors only."""

    def field_choices(self, field, request, model_admin):
        return recent_author_choices()


class SameDrawerFilter(admin.SimpleListFilter):
    """Every drawing by one sample's drawer, reached from that sample's page: an anonymous
    drawer has no name to pick from a list, and their key is a secret."""

    title = "drawer"
    parameter_name = "drawer_of"

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"the drawer of sample {value}")] if value else []

    def queryset(self, request, queryset):
        if self.value() and self.value().isdecimal():
            return selectors.samples_of_drawer(queryset, sample_id=int(self.value()))
        return queryset


class LabelledByFilter(admin.SimpleListFilter):
    """Every sample one person labelled: how a careless or hostile labeller's work is undone."""

    title = "labelled by"
    parameter_name = "labelled_by"

    def lookups(self, request, model_admin):
        return [(str(pk), name) for pk, name in recent_author_choices()]

    def queryset(self, request, queryset):
        if self.value() and self.value().isdecimal():
            return selectors.samples_labelled_by(queryset, author_id=int(self.value()))
        return queryset
