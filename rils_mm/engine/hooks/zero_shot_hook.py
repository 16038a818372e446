"""Build the zero-shot classifier from the evaluation data set's metadata."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class ZeroShotClassifierHook(Hook):
    """Before each validation/test epoch, embed the class names of the
    evaluation data set with its prompt templates (``dataset.metainfo``
    ``classes`` and ``templates``) and install the result as the model's
    zero-shot classifier (``set_zero_shot_classifier``, see
    :class:`~rils_mm.models.ZeroShotClassifierMixin`).

    Models without a text tower (no ``set_zero_shot_classifier``: MAE, MILAN)
    are left alone, so the hook can sit in the default runtime.
    """

    priority = 'NORMAL'

    def _build(self, runner, dataloader) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_zero_shot_classifier'):
            return
        dataset = dataloader.dataset
        meta = getattr(dataset, 'metainfo', {}) or {}
        missing = [k for k in ('classes', 'templates') if not meta.get(k)]
        if missing:
            raise KeyError(
                f'ZeroShotClassifierHook: the evaluation data set '
                f'{type(dataset).__name__} has no {missing} in its metainfo; '
                'use ZeroShotClsDataset or give them in the dataset config')
        model.set_zero_shot_classifier(list(meta['classes']), list(meta['templates']))

    def before_val_epoch(self, runner) -> None:
        self._build(runner, runner.val_loop.dataloader)

    def before_test_epoch(self, runner) -> None:
        self._build(runner, runner.test_loop.dataloader)
