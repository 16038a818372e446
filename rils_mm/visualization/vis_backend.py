"""TensorBoard logging that switches itself on when TensorBoard is installed."""
import importlib.util

from mmengine.logging import print_log
from mmengine.visualization import TensorboardVisBackend
from mmpretrain.registry import VISBACKENDS


class _NoWriter:
    """Stands in for the SummaryWriter: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


@VISBACKENDS.register_module()
class OptionalTensorboardVisBackend(TensorboardVisBackend):
    """mmengine's :class:`TensorboardVisBackend` when ``tensorboard`` (or
    ``tensorboardX``) can be imported, a silent no-op otherwise.

    ``configs/_base_/default_runtime.py`` lists it next to ``LocalVisBackend``
    (which always writes ``<work_dir>/<timestamp>/vis_data/scalars.json``), so
    every run also writes TensorBoard event files when TensorBoard is there
    (``pip install tensorboard``; view with ``tensorboard --logdir work_dirs``)
    and needs nothing extra when it is not. A config cannot make that choice
    itself: mmengine refuses imports of non-builtin modules in plain configs.
    """

    @staticmethod
    def available() -> bool:
        return any(
            importlib.util.find_spec(m) is not None for m in ('tensorboard', 'tensorboardX'))

    def _init_env(self):
        if self.available():
            super()._init_env()
        else:
            print_log('TensorBoard is not installed: no event files are written '
                      '(scalars still go to vis_data/scalars.json; pip install '
                      'tensorboard to get them)', logger='current')
            self._tensorboard = _NoWriter()
