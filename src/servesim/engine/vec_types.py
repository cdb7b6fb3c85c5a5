"""`vec` and `i64` for the compiled core's type annotations, importable without them.

librt (mypyc's runtime library, with the compile extra) provides `vec`, an array of unboxed values that compiled
code indexes natively; mypy_extensions provides `i64` and `u8`. A Python-only install may have neither: then these names
are None, and servesim.engine.columns builds plain lists instead (run from the sources, the faster column).
Not compiled itself: it only passes the names on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from librt.vecs import vec
    from mypy_extensions import i64, u8
else:
    try:
        from librt.vecs import vec
        from mypy_extensions import i64, u8
    except ImportError:
        vec = i64 = u8 = None

__all__ = ["i64", "u8", "vec"]
