"""Build servesim's hot modules (servesim.compiled.MODULES) as C extensions with mypyc, in place: `make compile`.

The extensions are built from the same .py files that run without them; servesim.compiled keeps an extension
from running once its source has changed. Needs the `compile` extra (mypy) and a C compiler.

    python scripts/compile_core.py           # build src/servesim/**/*.so and the manifest
    python scripts/compile_core.py --clean   # remove them: back to pure Python
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["SERVESIM_PURE"] = "1"  # importing servesim must not warn about the build this replaces
from servesim.compiled import MANIFEST, MODULES, SRC, source_hash, source_path  # noqa: E402

ROOT = SRC.parent
BUILD = ROOT / "build" / "mypyc"
GROUP = "servesim_core"  # the shared library mypyc puts next to the package: SRC/servesim_core__mypyc*.so


def built_files() -> list[Path]:
    """Every extension in the package (servesim has no others), also of modules no longer in MODULES."""
    return sorted((SRC / "servesim").rglob("*.so")) + sorted(SRC.glob(GROUP + "__mypyc*.so"))


def clean() -> None:
    for path in built_files() + [MANIFEST]:
        path.unlink(missing_ok=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    clean()  # a failed build must not leave extensions of older sources behind
    started = time.perf_counter()
    os.environ["MYPY_CACHE_DIR"] = str(BUILD / "mypy-cache")  # everything but the extensions stays in build/
    os.chdir(SRC)  # mypyc names modules by their path from here
    paths = [str(source_path(m).relative_to(SRC)) for m in MODULES]
    setup(name="servesim-core", ext_modules=mypycify(paths, group_name=GROUP, target_dir=str(BUILD / "c")),
          script_args=["--quiet", "build_ext", "--inplace", "--build-temp", str(BUILD / "temp"),
                       "--build-lib", str(BUILD / "lib")])
    missing = [m for m in MODULES if not list(source_path(m).parent.glob(source_path(m).stem + ".*.so"))]
    if missing:
        sys.exit(f"compile_core: mypyc built no extension for {', '.join(missing)}")
    MANIFEST.write_text(json.dumps({m: source_hash(m) for m in MODULES}, indent=1) + "\n")
    print(f"compiled {len(MODULES)} modules in {time.perf_counter() - started:.0f} s: {', '.join(MODULES)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", action="store_true", help="remove the extensions and the manifest")
    args = ap.parse_args()
    clean() if args.clean else build()


if __name__ == "__main__":
    main()
