"""The error an adapter raises when the framework it adapts is not installed."""

from __future__ import annotations

__all__ = ["framework_missing"]


def framework_missing(
    module: str, framework: str, extra: str, exc: ModuleNotFoundError
) -> ModuleNotFoundError:
    """``exc`` again, saying which of redkit's extras installs ``framework``."""
    return ModuleNotFoundError(
        f"{module} needs {framework} ({exc}): pip install 'redkit[{extra}]'", name=exc.name
    )
