"""Test-only, loaded by every Python process started with this folder on PYTHONPATH (Ray's workers included): a
PNG decoder that crashes its process with a real segmentation fault (a read of address 0, as a C decoder's bad
pointer would) on a file holding ``MEDIMG_TEST_CRASH_TOKEN``, each crash counted as a line of
``MEDIMG_TEST_CRASH_LOG``. Without the token in the environment it does nothing.

Not ``os.kill(pid, SIGSEGV)``: Ray's workers handle a signal sent so and carry on, running ``finally`` blocks, which
a fault in a decoder's C code never lets happen."""

import os

_TOKEN = os.environ.get("MEDIMG_TEST_CRASH_TOKEN", "").encode()

if _TOKEN:
    import ctypes

    from PIL import Image

    _open = Image.open

    def _crashing_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        if hasattr(fp, "read") and hasattr(fp, "seek"):
            at = fp.tell()
            data = fp.read()
            fp.seek(at)
            if _TOKEN in data:
                with open(os.environ["MEDIMG_TEST_CRASH_LOG"], "a", encoding="ascii") as log:
                    log.write("crash\n")
                ctypes.string_at(0)  # SIGSEGV
        return _open(fp, *args, **kwargs)

    Image.open = _crashing_open
