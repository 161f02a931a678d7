"""API errors: Django validation and permission errors raised by services become DRF responses, and a
database that is down or hung a JSON 503 (not Django's HTML 500 page)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError, RestrictedError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler

from ..keys import AUTHENTICATION_REQUIRED


class InUse(exceptions.APIException):
    status_code = 409
    default_detail = "This object is in use; remove what uses it first."
    default_code = "in_use"


def _in_use(exc: ProtectedError | RestrictedError) -> InUse:
    users = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
    names = sorted({str(getattr(obj, "route", obj)) for obj in users})
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return InUse(f"This object is in use by {shown}; change or delete those first.")


class DatabaseUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The database is unreachable or did not answer in time. Try again shortly."
    default_code = "database_unavailable"


def exception_handler(exc, context):
    if isinstance(exc, (OperationalError, InterfaceError)):
        # Refused, cut or timed out (connect or statement timeout): an outage, which a client may retry.
        exc = DatabaseUnavailable()
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, (ProtectedError, RestrictedError)):
        # A credential a route target uses: deleting it would silently change where the route sends requests.
        exc = _in_use(exc)
    elif isinstance(exc, IntegrityError):
        # A concurrent request created the same unique object between validation and insert.
        exc = exceptions.ValidationError({"non_field_errors": ["An object with these values already exists."]})
    elif isinstance(exc, exceptions.NotAuthenticated):
        exc = exceptions.NotAuthenticated(AUTHENTICATION_REQUIRED)
    return drf_exception_handler(exc, context)
