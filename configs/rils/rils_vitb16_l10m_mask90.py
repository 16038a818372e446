# Table 11a: mask ratio 90 % (default 75 %: rils_vitb16_l10m.py), ViT-B/16, L-10M, 25 epochs.
_base_ = './rils_vitb16_l10m.py'
model = dict(backbone=dict(mask_ratio=0.9))
