"""Errors a user can act on. Library code raises these; the CLI turns them into one line and exit 2."""


class GanbenchError(Exception):
    """A mistake in what the user asked for, or a missing resource, with a message that says what to do."""


class UnknownName(GanbenchError):
    """A name that no registry holds."""


class SpecError(GanbenchError):
    """A value outside what a spec field allows."""


class PluginClash(GanbenchError):
    """Two plugins registered one name."""


class DataMissing(GanbenchError):
    """A data set's files are not on disk and cannot be downloaded."""
