"""`mien serve`: web page, REST API and webcam WebSocket (FastAPI + uvicorn)."""

from mien.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str):
    if name == "create_app":  # imports FastAPI and the models only when asked for
        from mien.server.app import create_app

        return create_app
    raise AttributeError(name)
