"""`prunetune ls`: list supported model families, scorers, tuners and tasks."""


def register(sub):
    p = sub.add_parser("ls", help="list model families, importance scorers, recovery methods and tasks")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.models import FAMILIES

    print("families:       " + ", ".join(FAMILIES))
    try:
        from prunetune.pruning import importance

        print("mlp scorers:    " + ", ".join(importance.MLP_SCORERS))
        print("kv scorers:     " + ", ".join(importance.KV_SCORERS))
        print("layer scorers:  " + ", ".join(importance.LAYER_SCORERS))
    except ImportError:
        pass
    try:
        from prunetune.recovery import TUNERS

        print("recovery:       " + ", ".join(TUNERS))
    except ImportError:
        pass
    try:
        from prunetune.tasks import TASKS

        print("tasks:          " + ", ".join(sorted(TASKS)))
    except ImportError:
        pass
    return 0
