"""A one-file Django project for the WSGI tests."""

from __future__ import annotations

import hashlib
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello from django, {request.GET.get('who', 'nobody')}")


def form(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"name": request.POST.get("name"), "method": request.method})


def upload(request: HttpRequest) -> JsonResponse:
    f = request.FILES["file"]
    data = f.read()
    return JsonResponse({"name": f.name, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest()})


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(f"chunk {i}\n" for i in range(3))


def error(request: HttpRequest) -> Any:
    raise RuntimeError("django view failed")


urlpatterns = [
    path("", index),
    path("form", form),
    path("upload", upload),
    path("stream", stream),
    path("error", error),
]

application = get_wsgi_application()
