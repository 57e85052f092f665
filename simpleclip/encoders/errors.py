"""The one error raised when an encoder cannot be built or its pretrained weights cannot load.

Downloads fail in many ways (no network, a typo, an empty cache); the learner should see one
message that names the model and says what to do, with the original error chained below it.
Used by ``simpleclip.encoders.image`` and ``simpleclip.encoders.text``.
"""

from __future__ import annotations


class EncoderLoadError(RuntimeError):
    """An encoder could not be built: unknown name, or weights neither cached nor downloadable."""
