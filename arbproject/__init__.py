"""The project's configuration. The Celery app is loaded on first use (`arbproject.celery_app`, and
by trading's AppConfig.ready in every Django process, so every task is sent through it): a process
that only reads settings, such as a feed worker, never imports Celery."""


def __getattr__(name: str):
    if name == "celery_app":
        from .celery import app

        return app
    raise AttributeError(f"module 'arbproject' has no attribute {name!r}")


__all__ = ("celery_app",)
