"""Liveness and readiness for load balancers: ``GET /healthz``."""

import logging
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from training.serving import active_model

logger = logging.getLogger(__name__)


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=0.3, socket_timeout=0.3
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _check_model() -> str:
    return f"v{active_model.get().number}"


CHECKS = {"database": _check_database, "redis": _check_redis, "model": _check_model}
# Predictions keep working without Redis, so it degrades the answer but does not fail it.
ESSENTIAL = {"database", "model"}


@never_cache
@require_GET
def healthz(request):
    started = time.perf_counter()
    results, healthy = {}, True
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception:
            # The reason goes to the log: exception text can name hosts, paths and users.
            logger.exception("Health check %r failed", name)
            results[name] = "error"
            healthy = healthy and name not in ESSENTIAL
    results["status"] = "ok" if healthy else "unavailable"
    results["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return JsonResponse(results, status=200 if healthy else 503)
