"""ibis, loaded on first use instead of at start-up.

ibis takes about 0.2 s to import: a sixth of a `medallion run` that finds nothing new, and most of
`medallion --version`. Most modules here only build expressions inside functions, so they take
`ibis` from this module (`from medallion_lakehouse.lazy_imports import ibis`): a module object
from the standard library's lazy loader, executed the first time one of its attributes is read.
A plain `import ibis` would load it at once (the import statement reads the module's `__spec__`),
and so does importing a submodule, which is why `ibis.expr.types` and `ibis.expr.datatypes` are
imported for annotations only, under TYPE_CHECKING.

Python 3.11's lazy loader takes no lock: two threads reading the first attribute at the same
moment could see the module half-loaded. The pipeline builds expressions on its main thread.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING


def deferred(name: str) -> ModuleType:
    """`name` from sys.modules if loaded, else a module that loads when first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    # In sys.modules before it runs, as an eager import would be: ibis' own imports of itself
    # must find this object.
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def is_loaded(name: str) -> bool:
    """True once `name` has run (a deferred module that nothing has read yet has not)."""
    module = sys.modules.get(name)
    # The lazy loader marks a module by its class until the first read replaces it.
    return module is not None and type(module) is ModuleType


if TYPE_CHECKING:
    import ibis as ibis
else:
    ibis = deferred("ibis")
