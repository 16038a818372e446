"""Seeing what RILS learned: patch-text maps (Eq. 8), word segmentations of an image
and a TensorBoard backend."""
from .patch_text import draw_patch_text, patch_text_probs, winning_phrases
from .vis_backend import OptionalTensorboardVisBackend
from .zero_shot_seg import draw_word_segmentation, segment_words

__all__ = ['patch_text_probs', 'draw_patch_text', 'winning_phrases',
           'OptionalTensorboardVisBackend', 'segment_words', 'draw_word_segmentation']
