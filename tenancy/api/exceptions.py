"""API errors: Django validation and permission errors raised by services become DRF responses."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, IntegrityError):
        # A concurrent request created the same unique object between validation and insert.
        exc = exceptions.ValidationError({"non_field_errors": ["An object with these values already exists."]})
    elif isinstance(exc, exceptions.NotAuthenticated):
        exc = exceptions.NotAuthenticated(
            "Authentication required: sign in, or send a gateway key as 'Authorization: Bearer sk-ingate-…'."
        )
    return drf_exception_handler(exc, context)
