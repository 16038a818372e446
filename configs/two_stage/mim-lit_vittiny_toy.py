# MIM->LiT at toy scale: MIM->CLIP at toy scale (CLIP toy config, image encoder from the toy
# MAE) with that encoder locked.
#   python tools/train.py configs/mae/mae_vittiny_toy.py        (stage 1)
#   python tools/train.py configs/two_stage/mim-lit_vittiny_toy.py
_base_ = './mim-clip_vittiny_toy.py'
model = dict(freeze_backbone=True)
