# The tiny MAE on the toy corpus: the RILS toy encoder (64 px, patch 8, 4 x 128) with
# mmpretrain's MAE, a 2-block 128-d pixel decoder; data and schedule of the RILS toy config.
_base_ = ['../_base_/models/mae_vittiny.py', '../_base_/toy_cpu.py']
# No text tower, so no zero-shot evaluation.
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
