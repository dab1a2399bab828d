"""Give every admin request an id: the client's X-Request-ID when safe, else a new one.

The id is in every log line written while the request is served (routing.logs reads the
contextvar) and comes back in the response's ``X-Request-ID`` header.
"""

from collections.abc import Callable

from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from routing.logs import (
    REQUEST_ID_HEADER,
    clean_request_id,
    new_request_id,
    set_request_id,
)


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = clean_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
        # Not reset on the way out: Django logs a 4xx/5xx ("Unauthorized: /api/...") after
        # the middleware chain returns. request_finished clears it once the response is sent.
        set_request_id(rid)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = rid
        return response


def _forget_request_id(**kwargs: object) -> None:
    set_request_id(None)


request_finished.connect(_forget_request_id, dispatch_uid="athena_forget_request_id")
