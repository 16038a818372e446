"""Seeing what RILS learned: patch-text maps (Eq. 8) and a TensorBoard backend."""
from .patch_text import draw_patch_text, patch_text_probs, winning_phrases
from .vis_backend import OptionalTensorboardVisBackend

__all__ = ['patch_text_probs', 'draw_patch_text', 'winning_phrases',
           'OptionalTensorboardVisBackend']
