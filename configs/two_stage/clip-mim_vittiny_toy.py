# CLIP->MIM at toy scale: the toy MAE student predicts the frozen toy CLIP's features.
#   python tools/train.py configs/clip/clip_vittiny_toy.py      (stage 1)
#   python tools/train.py configs/two_stage/clip-mim_vittiny_toy.py
_base_ = ['../_base_/models/clip-mim_vittiny.py', '../_base_/toy_cpu.py']
# No text tower, so no zero-shot evaluation.
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
