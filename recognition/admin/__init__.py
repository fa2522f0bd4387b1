"""Moderation: the review queue of samples, their history, and the dashboard.

Samples are read-only forms here: every label or status change goes through an
action that calls a service, so moderator labels are audited Corrections that
train the model like any other, and status changes land in the admin log.
"""

from . import audit, samples  # noqa: F401  (importing registers their ModelAdmins)
