"""Bound what pydicom will build from an uploaded DICOM, before it parses it.

``pydicom.dcmread`` inflates a Deflated Explicit VR Little Endian body in one go, and builds a Python object for every
element and sequence item (300-700 bytes each): a small upload can cost gigabytes. :func:`check_dicom_structure` walks
the element headers the way pydicom 3's reader does (values are skipped, never decoded) and refuses a file that
inflates too far, holds too many elements and items, nests too deep, or would make pydicom rescan it over and over.
A merely damaged structure is not refused: the walk stops there, and the reader's own messages apply.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
from typing import BinaryIO

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import converters

from ..errors import InputError
from .dicom_inflate import _CHUNK, MAX_INFLATED_BYTES, declared_syntax, inflate_bounded  # noqa: F401 - MAX_INFLATED_BYTES: the guard's

log = logging.getLogger(__name__)

#: Elements + sequence items + encapsulated fragments a file may hold. pydicom's 194 sample files hold 8 to 1,491
#: (CT, MR, US, SR, RT plan/dose/struct, ECG waveform, DICOMDIR); an enhanced multi-frame header (~50 per frame)
#: reaches it at ~2,000 frames. 100,000 empty items cost pydicom ~70 MB, ~80 MB through de-identification.
MAX_DICOM_ELEMENTS = 100_000
#: Sequence nesting depth (pydicom's samples: at most 5, in a structured report; its reader recurses ~4 frames a level).
MAX_DICOM_DEPTH = 32
#: pydicom rescans to the end for each undefined-length value that has no end marker; bytes it may so scan, as a
#: multiple of the file size (a truncated file costs one scan).
MAX_RESCAN_FACTOR = 4

_ITEM, _ITEM_END, _SEQ_END, _UNDEFINED = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD, 0xFFFFFFFF
_DEFLATED = "1.2.840.10008.1.2.1.99"
_ENCODINGS = {"1.2.840.10008.1.2": (True, True), "1.2.840.10008.1.2.1": (False, True),
              "1.2.840.10008.1.2.2": (False, False)}  # (implicit VR, little endian); any other: explicit little
_VRS = frozenset(str(v).encode() for v in VR)  # pydicom's ENCODED_VR
_LONG_VRS = frozenset(str(v) for v in EXPLICIT_VR_LENGTH_32)  # a 4-byte length in explicit VR
#: VRs pydicom splits into one object a value (a 2 MB "1\\1\\..." Window Center: ~400 MB; a 2 MB US: 42 MB): in a
#: value longer than _LONG_TEXT bytes every value counts towards MAX_DICOM_ELEMENTS (text: at each backslash).
_MULTI_TEXT, _LONG_TEXT = frozenset("AE AS CS DA DS DT IS LO PN SH TM UC UI".split()), 1024
_NUMBER_WIDTH = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "SV": 8, "UV": 8}


@functools.lru_cache(maxsize=4096)
def _dictionary_sq(tag: int) -> bool | None:
    """True/False: the data dictionary gives ``tag`` the VR SQ/another VR; None: the tag is not in it."""
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return None


def _text_vr(vr: str | None, tag: int) -> str | None:
    """The VR pydicom reads a value as: the dictionary's where the file gives none or UN (pydicom replaces UN)."""
    try:
        return (dictionary_VR(tag).split(" ")[0]) if vr in (None, "UN") else vr  # "US or SS": as many objects
    except KeyError:
        return vr


class _Short(Exception):
    """pydicom would run out of bytes here: its parse of the current region ends (or fails)."""


class _Frame:
    """A data set (``seq`` False) or a sequence being walked, as pydicom would read it."""

    __slots__ = ("end", "implicit", "little", "region", "resume", "seq", "stop")

    def __init__(self, seq: bool, implicit: bool, little: bool, end: int | None, region: int,
                 resume: int | None = None, stop: int | None = None) -> None:
        self.seq, self.implicit, self.little, self.end = seq, implicit, little, end  # end: a defined length's end
        self.region, self.resume, self.stop = region, resume, stop  # region: where the bytes of this parse end


class _Walker:
    """Counts the elements and items of one byte stream, following pydicom 3 (filereader.py, fileutil.py)."""

    def __init__(self, fp: BinaryIO, size: int, count: int = 0) -> None:
        self.fp, self.size, self.count, self.rescanned = fp, size, count, 0
        self.no_delimiter_from: dict[int, int] = {}  # region end -> a position with no sequence delimiter after it
        self.transfer_syntax: str | None = None

    def read(self, pos: int, n: int, region: int) -> bytes:
        if pos + n > region:
            raise _Short
        self.fp.seek(pos)
        data = self.fp.read(n)
        if len(data) < n:
            raise _Short
        return data

    def add(self, n: int = 1) -> None:
        self.count += n
        if self.count > MAX_DICOM_ELEMENTS:
            log.info("DICOM refused: over %d elements and items", MAX_DICOM_ELEMENTS)
            raise InputError(
                f"This DICOM file holds more than {MAX_DICOM_ELEMENTS:,} attributes and sequence items, more than this "
                "server reads for one image. Export the image on its own (without embedded reports, overlays or "
                "private data) and upload it again.")

    def implicit(self, pos: int, assumed: bool, region: int, in_item: bool) -> bool:
        """pydicom's ``_is_implicit_vr``: the encoding a data set is read in, from its first element's VR bytes."""
        if in_item and assumed:
            return True
        try:
            head = self.read(pos, 6, region)
        except _Short:
            return assumed
        return not (0x40 < head[4] < 0x5B and 0x40 < head[5] < 0x5B)

    def fragments(self, pos: int, little: bool, region: int) -> int | None:
        """pydicom's ``_try_read_encapsulated_pixel_data``: items skipped by length up to the sequence delimiter;
        the position past it, or None (pydicom then scans for the delimiter's bytes)."""
        try:
            while True:
                group, elem, length = struct.unpack("<HHL" if little else ">HHL", self.read(pos, 8, region))
                if group << 16 | elem != _ITEM:
                    return pos + 8 if group << 16 | elem == _SEQ_END else None
                self.add()  # a fragment: the pixel decoders keep one entry each
                pos += 8 + length
        except _Short:
            return None

    def scan(self, pos: int, little: bool, region: int) -> int | None:
        """pydicom's fallback: past the first sequence delimiter bytes from ``pos``; None: pydicom's EOFError."""
        if pos < self.no_delimiter_from.get(region, region + 1):
            needle, start = struct.pack("<HH" if little else ">HH", 0xFFFE, 0xE0DD), pos
            while start < region:
                self.fp.seek(start)
                chunk = self.fp.read(min(_CHUNK, region - start))
                if (found := chunk.find(needle)) != -1:
                    return start + found + 8
                if len(chunk) < 4 or start + len(chunk) >= region:
                    break
                start += len(chunk) - 3
            self.no_delimiter_from[region] = pos
        self.rescanned += max(region - pos, 0)  # pydicom scans to the end every time, then rewinds
        if self.rescanned > MAX_RESCAN_FACTOR * self.size + _CHUNK:
            log.info("DICOM refused: values without an end marker would be rescanned too often")
            raise InputError("This DICOM file's structure is damaged (values without their end marker) in a way that "
                             "would take this server too long to read. Export the image again and upload it.")
        return None

    def walk(self, pos: int, implicit: bool, little: bool, region: int, stop: int | None = None) -> int | None:
        """Walk one top-level data set from ``pos``: where pydicom stops reading it, or None when it runs out of
        bytes (nothing after that is read). ``stop``: the group that ends it (file meta: 2, command set: 0)."""
        stack = [_Frame(False, self.implicit(pos, implicit, region, False), little, None, region, stop=stop)]
        while stack:
            try:
                pos = self.step(stack, pos)
            except _Short:  # drop the frames of the innermost region; its enclosing parse goes on after it
                while stack and stack[-1].resume is None:
                    stack.pop()
                if not stack:
                    return None
                pos = stack.pop().resume  # type: ignore[assignment]
        return pos

    def step(self, stack: list[_Frame], pos: int) -> int:
        """Read one element or item header at ``pos`` in the innermost frame; the position to go on from."""
        f = stack[-1]
        if f.end is not None and pos >= f.end:  # a defined-length item or sequence is done (pydicom never seeks)
            stack.pop()
            return pos if f.resume is None else f.resume
        head, e = self.read(pos, 8, f.region), "<" if f.little else ">"
        if f.seq:  # an item: pydicom takes any tag but the sequence delimiter as one
            group, elem, length = struct.unpack(e + "HHL", head)
            if group << 16 | elem == _SEQ_END:
                stack.pop()
                return pos + 8 if f.resume is None else f.resume
            self.add()
            end = None if length == _UNDEFINED else pos + 8 + length
            stack.append(_Frame(False, self.implicit(pos + 8, f.implicit, f.region, True), f.little, end, f.region))
            return pos + 8
        vr: str | None = None
        if f.implicit:
            group, elem, length = struct.unpack(e + "HHL", head)
        else:
            group, elem, raw_vr, length = struct.unpack(e + "HH2sH", head)
            if raw_vr in _VRS:
                vr = raw_vr.decode("latin-1")
            elif not (b"AA" <= raw_vr <= b"ZZ") and config.assume_implicit_vr_switch:
                group, elem, length = struct.unpack(e + "HHL", head)  # this element is in implicit VR
            else:
                vr = raw_vr.decode("latin-1")  # an unknown VR: read with a 2-byte length, as pydicom does
        value, tag = pos + 8, group << 16 | elem
        if vr in _LONG_VRS:
            length, value = struct.unpack(e + "L", self.read(value, 4, f.region))[0], value + 4
        if tag == _ITEM_END:  # ends the data set being read
            stack.pop()
            return value
        if f.stop is not None and group != f.stop:  # the file meta or command set ends before this element
            stack.clear()
            return pos
        self.add()
        if f.stop == 2 and tag == 0x00020010:  # pydicom keeps the last one; a long one is just unknown
            uid = self.read(value, length, f.region) if length <= 1024 else b"?"
            self.transfer_syntax = uid.decode("latin-1").rstrip("\0 ")
        if length != _UNDEFINED:
            sq = vr == "SQ"
            if vr in (None, "UN") and (sq := _dictionary_sq(tag)) is None:  # type: ignore[assignment]
                sq = length >= 8 and self.peek_item(value, e, f.region)  # a private sequence?
            if not sq:
                kind = _text_vr(vr, tag) if length > _LONG_TEXT else None  # one object a value, as elements cost
                if kind in _MULTI_TEXT:
                    self.add(self.read(value, length, f.region).count(b"\\"))
                elif kind in _NUMBER_WIDTH:
                    self.add(length // _NUMBER_WIDTH[kind])
                return value + length
            self.deeper(stack)  # parsed when accessed, from its own copy of the value's bytes
            end = value + length
            stack.append(_Frame(True, f.implicit, f.little, end, min(end, f.region), resume=end))
            return value
        if vr == "UN" and config.settings.infer_sq_for_un_vr:
            vr = "SQ"
        if vr is None:  # pydicom looks the tag up, else looks ahead for an item tag
            known = _dictionary_sq(tag)
            vr = "SQ" if (known if known is not None else self.peek_item(value, e, f.region)) else "OB"
        if vr == "SQ":  # undefined length: parsed at once, in the same bytes
            self.deeper(stack)
            stack.append(_Frame(True, f.implicit, f.little, None, f.region))
            return value
        end = self.fragments(value, f.little, f.region)
        end = end if end is not None else self.scan(value, f.little, f.region)
        if end is None:  # pydicom's EOFError, caught by the data set being read: it ends here, rewound
            stack.pop()
            return value
        return end

    def peek_item(self, pos: int, e: str, region: int) -> bool:
        return self.read(pos, 4, region) == struct.pack(e + "HH", 0xFFFE, 0xE000)

    @staticmethod
    def deeper(stack: list[_Frame]) -> None:
        if sum(fr.seq for fr in stack) >= MAX_DICOM_DEPTH:
            log.info("DICOM refused: sequences nested over %d deep", MAX_DICOM_DEPTH)
            raise InputError(f"This DICOM file nests sequences more than {MAX_DICOM_DEPTH} levels deep, far more than "
                             "an image needs. Export the image again (without embedded reports) and upload it.")


def check_dicom_structure(fp: BinaryIO, size: int, deflated: bool = True) -> None:
    """Refuse, with an :class:`InputError`, a DICOM file pydicom could not read in bounded memory and time: a deflated
    body inflating past :data:`MAX_INFLATED_BYTES`, more than :data:`MAX_DICOM_ELEMENTS` elements, items and
    fragments, sequences nested deeper than :data:`MAX_DICOM_DEPTH`, or values without an end marker that pydicom would
    rescan again and again. Call it before ``pydicom.dcmread(fp, force=True, ...)``.

    The file is the ``size`` bytes from offset 0 of ``fp``; fp's position is restored. Only element headers are read
    (values are skipped), so time is linear in the file size and memory is bounded (a deflated body is inflated twice:
    once to measure it in small steps, then, within the limit, to walk it). A damaged structure is not refused.
    ``deflated=False``: a Deflated file is refused outright (for readers that never inflate it).
    """
    here = fp.tell()
    try:
        _check(fp, size, deflated)
    finally:
        fp.seek(here)


def _check(fp: BinaryIO, size: int, deflated: bool) -> None:
    walker = _Walker(fp, size)
    fp.seek(128)
    pos: int | None = 132 if fp.read(4) == b"DICM" else 0  # the preamble and prefix are optional
    pos = walker.walk(pos, False, True, size, stop=2)  # type: ignore[arg-type]  # file meta (group 0002)
    data_set = pos
    pos = None if pos is None else walker.walk(pos, True, True, size, stop=0)  # command set (group 0000)
    if pos is not None and pos != data_set:  # pixel_array reads it with the data set, in one encoding: unwalked
        raise InputError("This DICOM file carries a network command set (group 0000), which a file does not hold. "
                         "Export the image again from the source system and upload it again.")
    if pos is None or pos >= size:
        return
    syntax = declared_syntax(fp, walker.transfer_syntax)
    if syntax == _DEFLATED and not deflated:  # a reader that never inflates would parse the compressed bytes
        raise InputError("This DICOM file is compressed as a whole (Deflated transfer syntax), which this server does "
                         "not decode. Export it as Explicit VR Little Endian (or with compressed pixel data) and "
                         "upload it again.")
    if syntax == _DEFLATED:  # pydicom inflates all of it at once: measure first, then walk the inflated bytes
        if inflate_bounded(fp, pos, keep=False) is None or (body := inflate_bounded(fp, pos, keep=True)) is None:
            return  # pydicom's inflate fails on it too
        _Walker(body, body.seek(0, io.SEEK_END), walker.count).walk(0, False, True, body.tell())
        return
    implicit, little = _ENCODINGS.get(syntax or "", (False, True)) if isinstance(syntax, str) else (False, True)
    if syntax is None:  # no transfer syntax: pydicom guesses from the first element (read_partial)
        try:
            group, _, raw_vr = struct.unpack("<HH2s", walker.read(pos, 6, size))
        except _Short:
            return
        implicit = raw_vr.decode("latin-1") not in converters
        little = implicit or group < 1024
    walker.walk(pos, implicit, little, size)
