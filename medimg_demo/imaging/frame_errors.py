"""The messages a compressed frame is refused with before it is decoded: what is wrong and what to do, never a
value read from the file (a forged header could carry text meant for the page or the log)."""

from __future__ import annotations

from ..errors import InputError

AGAIN = "Export the image again from the source system (uncompressed if it persists) and upload it again."


def damaged(what: str) -> InputError:
    """A frame whose codestream contradicts itself or the DICOM header."""
    return InputError(f"The DICOM pixel data is damaged or inconsistent: {what}, so it was not decoded. {AGAIN}")


def unsupported(what: str) -> InputError:
    """A frame that uses a codestream feature this server refuses to decode."""
    return InputError(f"The DICOM pixel data uses {what}, which this server does not decode. "
                      "Export the image uncompressed (Explicit VR Little Endian) and upload it again.")
