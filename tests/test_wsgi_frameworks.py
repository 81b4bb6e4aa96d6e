"""Real frameworks on pymongoose.wsgi: Flask and Django."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest
import requests
from wsgi_helpers import wsgi_serving

UPLOAD = os.urandom(3 << 20)  # bigger than one read, smaller than the test's patience


def test_flask_get_form_upload_stream_and_error(caplog: pytest.LogCaptureFixture) -> None:
    from wsgi_flask_app import app

    with caplog.at_level(logging.ERROR), wsgi_serving(app) as url, requests.Session() as s:
        assert s.get(url + "/", timeout=30).text.startswith("hello from flask")
        r = s.post(url + "/form", data={"name": "Ada", "city": "London"}, timeout=30)
        assert r.json() == {"name": "Ada", "city": "London"}
        r = s.post(url + "/upload", files={"file": ("data.bin", UPLOAD)},
                   data={"note": "hi"}, timeout=60)
        assert r.json() == {"filename": "data.bin", "size": len(UPLOAD),
                            "sha256": hashlib.sha256(UPLOAD).hexdigest(), "note": "hi"}
        r = s.get(url + "/stream", timeout=30)
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.text == "".join(f"line {i}\n" for i in range(4))
        assert s.get(url + "/error", timeout=30).status_code == 500
        assert s.get(url + "/missing", timeout=30).status_code == 404
        assert s.get(url + "/", timeout=30).status_code == 200  # still serving


def test_django_get_form_upload_stream_and_error(caplog: pytest.LogCaptureFixture) -> None:
    from wsgi_django_app import application

    with caplog.at_level(logging.ERROR), wsgi_serving(application) as url, \
            requests.Session() as s:
        assert s.get(url + "/?who=pony", timeout=30).text == "hello from django, pony"
        r = s.post(url + "/form", data={"name": "Grace"}, timeout=30)
        assert r.json() == {"name": "Grace", "method": "POST"}
        r = s.post(url + "/upload", files={"file": ("up.bin", UPLOAD)}, timeout=60)
        assert r.json() == {"name": "up.bin", "size": len(UPLOAD),
                            "sha256": hashlib.sha256(UPLOAD).hexdigest()}
        r = s.get(url + "/stream", timeout=30)
        assert r.text == "chunk 0\nchunk 1\nchunk 2\n"
        assert s.get(url + "/error", timeout=30).status_code == 500
        assert s.get(url + "/?who=again", timeout=30).text == "hello from django, again"
