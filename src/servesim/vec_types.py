"""`vec`, its `append`, and the native int types, for the compiled core: importable without them.

librt (mypyc's runtime library, with the compile extra) provides `vec`, an array of unboxed values that compiled
code indexes natively; mypy_extensions provides `i64`, `i32` and `u8`. A Python-only install may have neither:
then these names are None, and the modules that use them build plain lists, arrays and packed records instead
(run from the sources, those are the faster forms). Not compiled itself: it only passes the names on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from librt.vecs import append, vec
    from mypy_extensions import i32, i64, u8
else:
    try:
        from librt.vecs import append, vec
        from mypy_extensions import i32, i64, u8
    except ImportError:
        append = vec = i32 = i64 = u8 = None

__all__ = ["append", "i32", "i64", "u8", "vec"]
