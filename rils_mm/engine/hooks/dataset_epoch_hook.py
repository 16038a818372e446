"""Forward the epoch to the train data set (mmengine only tells samplers)."""
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from rils_mm.utils.seeding import EpochSeeded

__all__ = ['DatasetEpochHook', 'WebDatasetEpochHook']


@HOOKS.register_module()
class DatasetEpochHook(Hook):
    """Tell the train data set the epoch before each train epoch.

    mmengine only forwards the epoch to samplers. Iterable data sets such as
    :class:`~rils_mm.datasets.WebImageTextDataset` have none, so without this
    hook a data loader with ``num_workers > 0`` and ``persistent_workers=False``
    would repeat the same shard / sample order every epoch;
    :class:`~rils_mm.datasets.ImageTextDataset` seeds each sample's
    augmentations from the epoch and the run's seed. Data sets of this project
    (:class:`~rils_mm.utils.seeding.EpochSeeded`) get ``set_epoch(runner.epoch,
    seed=runner.seed)``; any other data set with a ``set_epoch`` gets
    ``set_epoch(runner.epoch)``.

    Also registered as ``WebDatasetEpochHook``, its earlier name.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        """Forward the epoch (and the run's seed) to the train data set."""
        dataset = getattr(runner.train_loop.dataloader, 'dataset', None)
        if isinstance(dataset, EpochSeeded):
            # (a runner-like object without a seed leaves the data set's seed)
            dataset.set_epoch(runner.epoch, seed=getattr(runner, 'seed', None))
        elif callable(getattr(dataset, 'set_epoch', None)):
            dataset.set_epoch(runner.epoch)


#: The earlier name (configs written before use it).
WebDatasetEpochHook = DatasetEpochHook
HOOKS.register_module(name='WebDatasetEpochHook', module=DatasetEpochHook)
