"""Errors a user can act on. Library code raises these; the CLI turns them into one line and exit 2."""


class GanbenchError(Exception):
    """A mistake in what the user asked for, or a missing resource, with a message that says what to do."""


class UnknownName(GanbenchError):
    """A name that no registry holds."""


class SpecError(GanbenchError):
    """A value outside what a spec field allows."""


class PluginClash(GanbenchError):
    """Two plugins registered one name: which kind of thing, which name, and the two plugins (first, second)."""

    def __init__(self, message: str, kind: str = "", name: str = "", plugins: tuple[str, str] = ("", "")):
        super().__init__(message)
        self.kind, self.name, self.plugins = kind, name, plugins


class DataMissing(GanbenchError):
    """A data set's files are not on disk and cannot be downloaded."""


def closest(name: str, known, n: int = 3, cutoff: float = 0.0) -> list[str]:
    """The known names closest to ``name`` (for "did you mean"), best first."""
    import difflib

    return difflib.get_close_matches(name, list(known), n=n, cutoff=cutoff)


def did_you_mean(name: str, known, cutoff: float = 0.0, otherwise: str = "") -> str:
    """"did you mean: a, b?" for the known names closest to ``name``, else ``otherwise``."""
    close = closest(name, known, cutoff=cutoff)
    return f"did you mean: {', '.join(close)}?" if close else otherwise


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """``warnings.formatwarning`` that prints a warning as one line, ``warning: <its first line>``."""
    text = str(message).strip().splitlines()
    return f"warning: {text[0] if text else category.__name__}\n"
