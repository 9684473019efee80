"""Suite-wide setup."""
from __future__ import annotations

import warnings

# pypylon and genicam are SWIG extensions; importing the second of them makes SWIG's own
# types emit "builtin type ... has no __module__" DeprecationWarnings that are not ours.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import genicam.genapi  # noqa: F401
        import pypylon.pylon  # noqa: F401
    except ImportError:  # pragma: no cover - the suite reports the missing SDK itself
        pass
