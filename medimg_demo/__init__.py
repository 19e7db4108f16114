"""medimg_demo: a research demo for tumor recognition on medical images.

For research use only. Not a medical device. Treatment pathways are options from a
cited guideline table for discussion by a tumor board, never orders.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research use only - not a medical device. Outputs are not a diagnosis; "
    "treatment pathways are options from a cited guideline table for a tumor board "
    "to discuss, not orders."
)
