"""Allocations: how a run's recovery budget (`recovery.total_steps`) is spent over its cuts.

One module per allocation in this package, each registering one class with
`@ALLOCATIONS.register("name", options=OptionsDataclass)`; every module here is imported when the
package is (adding an allocation is adding a module). A plugin registers the same way from outside.
"""

import importlib
import pkgutil

from prunetune.loop.allocations.base import (
    ALLOCATIONS,
    LOSS,
    REST,
    Allocation,
    Budget,
    Context,
    StopAt,
    build_allocation,
    options_dict,
    spread,
)

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _m != "base":
        importlib.import_module(f"{__name__}.{_m}")

__all__ = ["ALLOCATIONS", "LOSS", "REST", "Allocation", "Budget", "Context", "StopAt",
           "build_allocation", "options_dict", "spread"]
