from __future__ import annotations

from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404

from diagnosis.selectors import predictions_for
from platform_core.accounts.decorators import role_required
from platform_core.accounts.requests import signed_in_user
from platform_core.storage import serve_private, stored_name
from trials.selectors import SUBJECT_ROLES


@role_required(*SUBJECT_ROLES)
def prediction_overlay(request: HttpRequest, pk: str) -> HttpResponseBase:
    """The attention overlay of a prediction, for people who may see its case."""
    prediction = get_object_or_404(predictions_for(signed_in_user(request)), pk=pk)
    if not prediction.attention_overlay:
        raise Http404("This prediction has no attention map.")
    return serve_private(stored_name(prediction.attention_overlay), content_type="image/png")
