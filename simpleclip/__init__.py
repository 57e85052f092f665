"""simpleclip: learn CLIP (contrastive language-image pre-training) by building it.

Each module is one step of the pipeline and has a notebook that teaches it:
``data`` (01), ``encoders`` (02, 03), ``heads`` (04), ``loss`` (05), ``model``/``train`` (06),
``evaluate``/``viz`` (07), ``zeroshot`` (08), ``clip_arch`` (09).
Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", 2021 (arXiv:2103.00020).
"""

import os

# Offline means offline: no library phones home unless a command needs the network. On import,
# albumentations asks PyPI for its latest version (a 2 s HTTPS call, and a warning offline);
# Gradio and the Hugging Face Hub send usage statistics. A user's own setting wins.
for _switch, _value in {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_switch, _value)

__version__ = "0.1.0"
