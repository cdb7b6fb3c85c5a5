"""The one exception type users see: a single line naming the bad value, where it came from and the choices."""


class ServesimError(Exception):
    """Bad input. The CLI prints `error: <message>` and exits with status 2, never a traceback."""


def choices_error(kind: str, value: object, choices, where: str | None = None) -> ServesimError:
    place = f" ({where})" if where else ""
    listed = ", ".join(str(c) for c in choices)
    return ServesimError(f"unknown {kind} {value!r}{place}; valid choices: {listed}")
