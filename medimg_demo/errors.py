"""Typed errors whose messages tell the user what to do."""

from __future__ import annotations


class MedimgError(Exception):
    """Base class of every error this package raises on purpose."""


class OptionError(MedimgError, ValueError):
    """A command's options do not fit together, or with the named model or data; the message names what to change."""


class InputError(MedimgError):
    """The uploaded or named file cannot be used as an image; the message says why and what is accepted."""


class ModelError(MedimgError):
    """A model is missing, corrupt or inconsistent with its config."""


class DataError(MedimgError):
    """A data set folder or manifest is missing or malformed."""


class ConfigError(ModelError):
    """A model's config.json breaks its schema; the message names the field and what it must be."""


class SettingError(MedimgError):
    """An environment variable the deployer set is not what it must be; the message names it and what to set."""


class StoreError(MedimgError):
    """The feedback store cannot be read or written (read-only or full folder, locked or damaged file)."""


class AccessError(MedimgError):
    """The caller is not logged in, or their role does not allow this action."""


class ReportError(MedimgError):
    """A case report could not be written (output folder missing or read-only); the message says what to change."""


#: The web app's words in a message, and what the command line says instead: a decoder's refusal reads "upload it
#: again" and "this server" in the app, where they are true, and was printed so by ``predict``, ``batch`` and
#: ``deidentify`` too (thirty-eighth session's review).
_ON_THE_COMMAND_LINE = (
    ("and upload it again", "and run the command on the new file"),
    ("and upload again", "and run the command on the new file"),
    ("and upload it.", "and run the command on the new file."),
    ("give or upload it again", "give it again"),
    ("before uploading", "first"),
    ("Upload a ", "Give a "),
    ("Upload an ", "Give an "),
    ("Upload the ", "Give the "),
    ("upload a ", "give a "),
    ("for one upload on this server", "for one file"),
    ("to exhaust the server", "to exhaust the machine"),
    ("this server's", "this tool's"),
    ("this server", "this tool"),
)


def on_the_command_line(message: str) -> str:
    """``message`` in the command line's words (see :data:`_ON_THE_COMMAND_LINE`); unchanged where it has none of
    the app's."""
    for web, cli in _ON_THE_COMMAND_LINE:
        message = message.replace(web, cli)
    return message
