"""WSGI entry point of the API server.

Run it with ``gunicorn -c python:ai_local_core.api.gunicorn_conf ai_local_core.api.wsgi:app``
(which is what ``ai-local-core-api`` does).

Each gunicorn worker imports this module once, so each worker builds its own
app, Ollama client and backends and keeps them warm for its whole life.
"""

from ai_local_core.api.app import create_app

app = create_app()
