# The tiny MAE+CLIP on the toy corpus: the RILS toy config with pixel reconstruction.
_base_ = ['../_base_/models/mae-clip_vittiny.py', '../_base_/toy_cpu.py']
