"""prunetune: gradual structured pruning (the Prune-Tune Loop) that writes stock Hugging Face checkpoints.

The package is layered; each layer imports only from the layers below it (enforced by import-linter,
`make lint`, and a test):

    commands    cli.py, commands/           argparse subcommands; handlers parse and delegate
    loop        loop/                       recipe, planner, run directory, the loop, report, demo
    builtin     builtin/                    the offline world (arith data and task, reference and tiny
                                            models, tokenizers, GGUF import), registered as a plugin
    mechanisms  pruning/ recovery/ tasks/   scorers and surgery; cpt/sft/distill/grpo; tasks, generation,
                                            sandbox (independent of each other)
    data        data.py                     files, registered text sources, chunks, padding
    checkpoint  checkpoint.py               load / save stock checkpoints, built-in model names
    models      models/                     one adapter per family: the only code naming projections
    infra       config.py registry.py table.py, then io.py dist.py, then errors.py

Add a scorer, tuner, task, text source or built-in model with its registry's decorator
(`@MLP_SCORERS.register(...)`, `@TUNERS.register(...)`, `@TASKS.register(...)`, ...) in the module that
implements it; a third-party package adds a module to the `prunetune.plugins` entry-point group.
"""

__version__ = "0.1.0"
