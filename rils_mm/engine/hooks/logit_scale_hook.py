"""Clamp the learnable temperature after each step (CLIP/SLIP recipe)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class LogitScaleClampHook(Hook):
    """After every training iteration, clamp the head's ``logit_scale`` so
    that ``1 / sigma <= logit_scale_max`` (100), as the CLIP/SLIP recipe does.
    """

    priority = 'LOW'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        model.head.clamp_logit_scale()
