"""A database outage on a page (dashboard, prompts, evals, admin) answers 503 saying so, not Django's 500.

The API has its own handler (tenancy.api.exceptions); this covers the views outside DRF."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

log = logging.getLogger(__name__)

MESSAGE = "The database is unreachable or did not answer in time. Try again shortly."


class DatabaseOutageMiddleware(MiddlewareMixin):
    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        log.warning("%s %s: database unavailable (%s)", request.method, request.path, exception)
        if request.path.startswith("/ingate/api/"):
            return JsonResponse({"detail": MESSAGE}, status=503, headers={"Retry-After": "5"})
        return HttpResponse(MESSAGE, status=503, content_type="text/plain; charset=utf-8", headers={"Retry-After": "5"})
