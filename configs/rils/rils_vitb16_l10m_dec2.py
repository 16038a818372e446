# Table 11b: 2 decoder blocks (default 1: rils_vitb16_l10m.py), ViT-B/16, L-10M, 25 epochs.
_base_ = './rils_vitb16_l10m.py'
model = dict(neck=dict(decoder_depth=2))
