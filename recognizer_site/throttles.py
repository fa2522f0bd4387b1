"""Throttles that read their rate at request time, and what they do when Redis is down.

The throttle counts live in the shared cache (Redis). When it cannot be reached
a prediction is let through: an outage of the counter must not become an outage
of predictions. A correction is refused (503): unthrottled, each one may queue a
fine-tune, which is what the counter is there to bound. After a failure the
process stops asking the cache for RETRY_SECONDS, so that each request does not
pay a connection timeout (twice: both throttles run), and it logs once when the
outage starts and once when it ends.
"""

import logging
import threading
import time

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


class _CacheOutage:
    """Whether this process currently treats the throttle cache as unreachable."""

    def __init__(self):
        self.lock = threading.Lock()
        self.retry_at = 0.0
        self.down = False

    def skip(self) -> bool:
        return self.down and time.monotonic() < self.retry_at

    def failed(self, error: Exception):
        with self.lock:
            if not self.down:
                logger.warning(
                    "Throttle cache unavailable, predictions unthrottled, corrections refused: %s",
                    error,
                )
            self.down = True
            self.retry_at = time.monotonic() + RETRY_SECONDS

    def succeeded(self):
        if self.down:
            with self.lock:
                if self.down:
                    logger.info("Throttle cache reachable again, throttling resumes")
                self.down = False


outage = _CacheOutage()


class _FailOpen:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def allow_request(self, request, view):
        if self.rate is None or outage.skip():
            return True
        try:
            allowed = super().allow_request(request, view)
        except Exception as error:  # the cache backend's connection errors vary by client
            outage.failed(error)
            return True
        outage.succeeded()
        return allowed


class AnonThrottle(_FailOpen, AnonRateThrottle):
    pass


class UserThrottle(_FailOpen, UserRateThrottle):
    pass


class ThrottleUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "throttle_unavailable"
    default_detail = "Corrections are paused while the request counter is unreachable; try later."


class CorrectionThrottle(SimpleRateThrottle):
    """Corrections per client (a user, else the client's address), failing closed."""

    scope = "corrections"

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view):
        if request.user and request.user.is_authenticated:
            ident = f"user{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        if outage.skip():
            raise ThrottleUnavailable()
        try:
            allowed = super().allow_request(request, view)
        except Exception as error:  # the cache backend's connection errors vary by client
            outage.failed(error)
            raise ThrottleUnavailable() from None
        outage.succeeded()
        return allowed
