"""pytest's setup for {{name}}: the packages in deps/ (`pip install --target
deps PKG`), which `weir build` packs into the component, are importable in
the native tests too."""

import pathlib
import sys

DEPS = pathlib.Path(__file__).parent / "deps"
if DEPS.is_dir():
    sys.path.insert(0, str(DEPS))
