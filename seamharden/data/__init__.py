"""The data layer: sources -> records -> alignment pairs -> token ids -> endless batch streams."""

from seamharden.data.alignment import alignment_records
from seamharden.data.builtin_sets import builtin_mc, builtin_refusals, load_builtin
from seamharden.data.formatting import (
    IGNORE_INDEX,
    collate,
    encode_choices,
    encode_example,
    encode_prompt,
    pad_id,
    resolve_template,
    to_device,
)
from seamharden.data.seam_data import SeamData, build_seam_data
from seamharden.data.sources import fingerprint, load_records
from seamharden.data.streams import Stream, split_heldout

__all__ = [
    "IGNORE_INDEX", "SeamData", "Stream", "alignment_records", "build_seam_data", "builtin_mc",
    "builtin_refusals", "collate", "encode_choices", "encode_example", "encode_prompt", "fingerprint", "load_builtin",
    "load_records", "pad_id", "resolve_template", "split_heldout", "to_device",
]
