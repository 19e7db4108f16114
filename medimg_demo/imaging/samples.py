"""Sample DICOM images that pydicom ships (MR, CT, US, NM, SC): offline material for out-of-distribution sets."""

from __future__ import annotations

import warnings
from pathlib import Path


def dicom_sample_images() -> list[bytes]:
    """Image DICOM test files that pydicom ships (MR, CT, US, NM, SC); never downloads a missing one."""
    from pydicom.data import get_testdata_file

    names = ["MR_small.dcm", "MR_small_RLE.dcm", "CT_small.dcm", "examples_ybr_color.dcm", "examples_palette.dcm",
             "examples_rgb_color.dcm", "JPEG2000.dcm", "JPGExtended.dcm", "JPEG-lossy.dcm", "SC_rgb_small_odd.dcm"]
    out = []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = get_testdata_file(name, download=False)
        if path is not None:
            out.append(Path(path).read_bytes())
    return out
