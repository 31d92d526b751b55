"""`prunetune validate RECIPE`: every key, method name and constraint checked, nothing run."""


def register(sub):
    p = sub.add_parser("validate", help="check a recipe: keys, method names, constraints (loads no weights)")
    p.add_argument("recipe")
    p.add_argument("overrides", nargs="*")
    p.set_defaults(handler=run)


def run(args) -> int:
    from prunetune.loop import load_recipe, validate_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    _, steps, _ = validate_recipe(recipe)
    print(f"{args.recipe}: ok ({len(steps)} iteration{'s' if len(steps) != 1 else ''})")
    return 0
