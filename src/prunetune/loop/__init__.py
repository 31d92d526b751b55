"""The Prune-Tune Loop and what surrounds it: the recipe (recipe.py), its plan (planner.py), the run
directory (rundir.py), the loop itself (loop.py), reports (report.py) and the demo (demo.py)."""

from prunetune.loop.loop import Loop, run
from prunetune.loop.planner import validate_recipe
from prunetune.loop.recipe import Recipe, dump_recipe, load_recipe

__all__ = ["Loop", "Recipe", "dump_recipe", "load_recipe", "run", "validate_recipe"]
