"""``ai-local-core-api``: run the API server under gunicorn (``--dev``: Flask's dev server).

Examples::

    ai-local-core-api                          # gunicorn, settings from AI_LOCAL_CORE_ENV
    ai-local-core-api --bind 127.0.0.1:8088 --workers 1 --threads 8
    ai-local-core-api --dev                    # development only: never in production
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ai_local_core.config import load_settings
from ai_local_core.errors import AiLocalCoreError

__all__ = ["main"]

GUNICORN_CONFIG = "python:ai_local_core.api.gunicorn_conf"
WSGI_APP = "ai_local_core.api.wsgi:app"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ai-local-core-api", description=__doc__.split("\n")[0])
    parser.add_argument("--bind", help="HOST:PORT to listen on (default: api.bind and api.port)")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (api.workers)")
    parser.add_argument("--threads", type=int, help="threads per worker (api.threads)")
    parser.add_argument(
        "--dev", action="store_true", help="run Flask's development server instead of gunicorn"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except AiLocalCoreError as exc:
        print(f"ai-local-core-api: {exc.message}", file=sys.stderr)
        return exc.exit_code
    if args.dev:
        from ai_local_core.api.app import create_app

        host, _, port = (args.bind or f"{settings.api.bind}:{settings.api.port}").rpartition(":")
        create_app(settings).run(host=host or "127.0.0.1", port=int(port), threaded=True)
        return 0

    from gunicorn.app.wsgiapp import WSGIApplication

    gunicorn_args = ["-c", GUNICORN_CONFIG]
    if args.bind:
        gunicorn_args += ["--bind", args.bind]
    if args.workers is not None:
        gunicorn_args += ["--workers", str(args.workers)]
    if args.threads is not None:
        gunicorn_args += ["--threads", str(args.threads)]
    sys.argv = ["ai-local-core-api", *gunicorn_args, WSGI_APP]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="ai-local-core-api").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
