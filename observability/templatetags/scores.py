"""`{% record_scores record %}`: a record's scores as a small table, with a form to add one for those who may;
for any page that shows a record the viewer was already allowed to see (the request detail, the review queue)."""

from django import template

from tenancy.permissions import Principal, can_add

from ..models import Score
from ..scores import record_scores as scores_of

register = template.Library()


@register.inclusion_tag("observability/_scores.html", takes_context=True)
def record_scores(context, record, form: bool = True):
    """`form=False`: the scores alone, and nothing at all while there are none (the review queue scores the
    record right above them)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    may_add = bool(
        form and user is not None and user.is_authenticated and can_add(Principal.for_user(user), Score, record.org)
    )
    return {
        "record": record,
        "scores": list(scores_of(record)[:100]),
        "may_add": may_add,
        "show_empty": form,
        "csrf_token": context.get("csrf_token"),
        "here": request.get_full_path() if request is not None else "",
    }
