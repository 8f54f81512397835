"""``ISPYD_WSGI=1``: the WSGI application gunicorn serves is wrapped in
:class:`~ispyd.plugins.wsgi.WSGIApplicationWrapper`, so that the ``wsgi``
plugin's ``requests`` (and the dump of ``dump_on``) see its requests
without a line added to the application.

How the application is found: gunicorn loads the one named on its command
line (``module:app``) with ``gunicorn.util.import_app``, in the master with
``--preload`` and in each worker without. When ``gunicorn.util`` is
imported, its ``import_app`` is replaced by one that wraps what the
original returns. An application that is wrapped already, or that is an
ASGI application (a coroutine function, served by an ASGI worker class), is
returned as it is.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

TARGET = "gunicorn.util"


def install() -> None:
    """Wraps gunicorn's applications from now on."""
    module = sys.modules.get(TARGET)
    if module is not None:
        _patch(module)
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    """Patches ``gunicorn.util`` as it is imported, then steps aside."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Any = None):  # type: ignore[override]
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _is_asgi(app: Any) -> bool:
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None))


def _patch(util: ModuleType) -> None:
    original = util.import_app
    if getattr(original, "_ispyd_wraps", False):
        return

    @functools.wraps(original)
    def import_app(module: str) -> Any:
        app = original(module)
        from ispyd.plugins.wsgi import WSGIApplicationWrapper

        if isinstance(app, WSGIApplicationWrapper) or _is_asgi(app):
            return app
        return WSGIApplicationWrapper(app)

    import_app._ispyd_wraps = True  # type: ignore[attr-defined]
    util.import_app = import_app
