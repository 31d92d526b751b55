"""The built-in offline world: generated `arith` reasoning data, its task, the project-made reference model,
tiny random models of every family, the tokenizers they use and the GGUF import of SmolLM2.

Nothing below this package names any of it: it registers its model names, task and text source in the
same registries a third-party plugin would use (it is the `prunetune.plugins` entry point `builtin`).
"""

from prunetune.builtin import arith, arith_task  # noqa: F401  (arith_task registers the `arith` task)
from prunetune.builtin.reference import reference_dir
from prunetune.builtin.tiny import TINY_PREFIX, tiny_config, tiny_model
from prunetune.checkpoint import MODELS, BuiltinModel
from prunetune.data import SOURCES
from prunetune.models import FAMILIES

SOURCES.register("arith", doc="generated multi-step arithmetic word problems with worked solutions")(arith.records)
MODELS.register("reference", doc="the project-made reference reasoning model (a small Llama trained on arith)")(
    BuiltinModel(path=reference_dir)
)
for _family in FAMILIES:
    MODELS.register(TINY_PREFIX + _family, doc=f"a tiny randomly initialised {_family} model (tests, smoke runs)")(
        BuiltinModel(
            build=lambda dtype, f=_family: tiny_model(f, dtype=dtype),
            config=lambda f=_family: tiny_config(f),
        )
    )
