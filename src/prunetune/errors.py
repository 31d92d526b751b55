"""User-facing errors: bad input is reported as one line naming the key, flag or path, with exit code 2.

Internal invariants use `assert`; anything a user can cause raises `UserError`.
"""


class UserError(Exception):
    """Bad input from the user (a flag, a recipe key, a path). The CLI prints it on one line and exits 2."""


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean X?)' suffix for an unknown name, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
