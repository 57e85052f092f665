"""simpleclip: learn CLIP (contrastive language-image pre-training) by building it.

Each module is one step of the pipeline and has a notebook that teaches it:
``data`` (01), ``encoders`` (02, 03), ``heads`` (04), ``loss`` (05), ``model``/``train`` (06),
``evaluate``/``viz`` (07), ``zeroshot`` (08), ``clip_arch`` (09).
Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", 2021 (arXiv:2103.00020).
"""

__version__ = "0.1.0"
