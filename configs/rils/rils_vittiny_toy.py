# A tiny RILS for the toy corpus: trains on 2 CPU cores in a few minutes and evaluates
# zero-shot classification on the held-out toy split after the last epoch.
_base_ = ['../_base_/models/rils_vittiny.py', '../_base_/toy_cpu.py']
