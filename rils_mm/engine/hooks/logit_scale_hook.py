"""Clamp the learnable temperature after each step (CLIP/SLIP recipe)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class LogitScaleClampHook(Hook):
    """After every training iteration, clamp each learnable temperature so that
    ``1 / sigma <= logit_scale_max`` (100), as the CLIP/SLIP recipe does.

    Every submodule with a ``clamp_logit_scale()`` method (e.g.
    :class:`ImageTextContrastiveHead` and its subclasses) is clamped; a model without
    one (MAE, MILAN) is left alone, so the hook can sit in the default runtime.
    """

    priority = 'LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._modules = [m for m in model.modules() if callable(getattr(m, 'clamp_logit_scale',
                                                                        None))]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not hasattr(self, '_modules'):
            self.before_train(runner)
        for module in self._modules:
            module.clamp_logit_scale()
