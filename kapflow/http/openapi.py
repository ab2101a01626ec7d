"""``python -m kapflow.http.openapi``: print the API's OpenAPI document (checked into docs/api/openapi.json).

It describes the routes only, so it is built over a throwaway in-memory database.
"""

from __future__ import annotations

import json

from kapflow.bootstrap import build_engine
from kapflow.config import Settings
from kapflow.http.app import create_app
from kapflow.http.identity import RequestAuthenticator


def document() -> dict[str, object]:
    engine = build_engine("sqlite://", settings=Settings())
    try:
        return create_app(engine, RequestAuthenticator(engine)).openapi()
    finally:
        engine.close()


if __name__ == "__main__":
    print(json.dumps(document(), indent=2, sort_keys=True))
