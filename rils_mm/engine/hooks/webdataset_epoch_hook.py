"""Forward the epoch to the train data set (mmengine only tells samplers)."""
import inspect

from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class WebDatasetEpochHook(Hook):
    """Call ``set_epoch(runner.epoch)`` on the train data set before each epoch.

    mmengine only forwards the epoch to samplers. Iterable data sets such as
    :class:`~rils_mm.datasets.WebImageTextDataset` have none, so without this
    hook a data loader with ``num_workers > 0`` and ``persistent_workers=False``
    would repeat the same shard / sample order every epoch.
    :class:`~rils_mm.datasets.ImageTextDataset` seeds each sample's
    augmentations from the epoch and the run's seed; data sets whose
    ``set_epoch`` takes a ``seed`` get ``runner.seed`` as well.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        """Forward the epoch (and the run's seed) to the train data set."""
        dataset = getattr(runner.train_loop.dataloader, 'dataset', None)
        set_epoch = getattr(dataset, 'set_epoch', None)
        if set_epoch is None:
            return
        if 'seed' in inspect.signature(set_epoch).parameters:
            set_epoch(runner.epoch, seed=runner.seed)
        else:
            set_epoch(runner.epoch)
