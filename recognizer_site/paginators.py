"""Pagination that does not count a million rows on every page."""

import json
from functools import cached_property

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from rest_framework.pagination import PageNumberPagination

# Below this many rows (as PostgreSQL estimates them) an exact count is cheap.
EXACT_BELOW = 20_000


class EstimatedCountPaginator(Paginator):
    """Counts exactly when the rows are few; on PostgreSQL, estimates when they are many.

    A whole table's size comes from ``pg_class.reltuples`` (kept by ANALYZE and
    autovacuum), a filtered list's from the planner's estimate of its query; either
    is exact enough for page links. Other databases count.
    """

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if not isinstance(rows, QuerySet) or connections[rows.db].vendor != "postgresql":
            return super().count
        estimate = _estimated_rows(rows)
        if estimate is None or estimate < EXACT_BELOW:
            return super().count
        return estimate


def _estimated_rows(rows: QuerySet) -> int | None:
    if not rows.query.where:
        with connections[rows.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                [rows.model._meta.db_table],
            )
            found = cursor.fetchone()
        return found[0] if found and found[0] >= 0 else None  # -1: never analyzed
    plan = json.loads(rows.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPagination(PageNumberPagination):
    """The API's page numbers, with ``count`` estimated on PostgreSQL for long lists."""

    django_paginator_class = EstimatedCountPaginator
