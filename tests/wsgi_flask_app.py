"""A small Flask app for the WSGI tests and the command-line tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return f"hello from flask in {os.getpid()}"


@app.post("/form")
def form() -> dict[str, str]:
    return {"name": request.form["name"], "city": request.form.get("city", "")}


@app.post("/upload")
def upload() -> dict[str, object]:
    f = request.files["file"]
    data = f.read()
    return {"filename": f.filename, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "note": request.form.get("note")}


@app.get("/stream")
def stream() -> Response:
    def generate() -> Iterator[str]:
        for i in range(4):
            yield f"line {i}\n"

    return Response(generate(), mimetype="text/plain")


@app.get("/error")
def error() -> str:
    raise RuntimeError("flask view failed")
