"""How the dynamic providers' own failures reach the operator: as the words, not as a Python traceback.

Pulumi's Python dynamic-provider host reports any exception a provider raises with
``traceback.format_exc()``, so a failed gate reads as a stack of our source files with the message at the
bottom, on the plain ``pulumi up`` path too. A failure a provider reports on purpose is raised as
``Refused`` with ``sys.tracebacklimit`` at 0 in the provider's own process, which formats as
``fetchml: <message>``. A bug (any other exception) keeps its full traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Refused(Exception):
    """A provider's deliberate failure: the message is the whole story."""

    # What traceback prints in front of the message ("fetchml: ..."), in place of a Python class path.
    __module__ = "builtins"
    __qualname__ = "fetchml"


def reported(*expected: type[Exception]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a provider method so that ``Refused`` and the ``expected`` exceptions are reported as words."""
    caught: tuple[type[Exception], ...] = (Refused, *expected)

    def wrap(method: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(*args, **kwargs)
            except caught as exc:
                sys.tracebacklimit = 0  # this process only runs these providers
                raise Refused(str(exc)) from None
            except Exception:
                sys.__dict__.pop("tracebacklimit", None)  # a bug: keep the traceback whoever set it before
                raise

        return run

    return wrap
