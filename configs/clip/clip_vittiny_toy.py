# The tiny CLIP on the toy corpus: the RILS toy config with the method changed only.
_base_ = ['../_base_/models/clip_vittiny.py', '../_base_/toy_cpu.py']
