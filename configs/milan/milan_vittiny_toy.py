# The tiny MILAN on the toy corpus: toy MAE encoder, 2-block prompting decoder, targets and
# attention from the frozen toy CLIP.
#   python tools/train.py configs/clip/clip_vittiny_toy.py      (the teacher)
#   python tools/train.py configs/milan/milan_vittiny_toy.py
_base_ = ['../_base_/models/milan_vittiny.py', '../_base_/toy_cpu.py']
# No text tower, so no zero-shot evaluation.
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
