"""Forward the epoch to iterable data sets (mmengine only tells samplers)."""
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class WebDatasetEpochHook(Hook):
    """Call ``set_epoch(runner.epoch)`` on the train data set before each epoch.

    mmengine only forwards the epoch to samplers; iterable data sets such as
    :class:`WebImageTextDataset` have none, so without this hook a data loader
    with ``num_workers > 0`` and ``persistent_workers=False`` would repeat the
    same shard / sample order every epoch.
    """

    priority = 'NORMAL'

    def before_train_epoch(self, runner) -> None:
        """Forward the epoch to the train data set."""
        dataset = getattr(runner.train_loop.dataloader, 'dataset', None)
        if hasattr(dataset, 'set_epoch'):
            dataset.set_epoch(runner.epoch)
