"""Resume a checkpoint written with the other parameter-group layout (one group per
parameter, as mmengine's default constructor makes them, or merged groups), schedulers
included."""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmpretrain.registry import HOOKS

from ..optimizers.param_groups import convert_scheduler_state, param_group_layouts

__all__ = ['ParamGroupLayoutHook']


@HOOKS.register_module()
class ParamGroupLayoutHook(Hook):
    """Map an old checkpoint's optimiser and scheduler states onto merged groups.

    The optimiser's own state is mapped by its ``load_state_dict`` pre-hook
    (:mod:`rils_mm.engine.optimizers.param_groups`). mmengine's parameter schedulers
    also keep values per group (``base_values``, ``_last_value``), loaded by
    ``__dict__.update``: with 331 saved groups and 3 groups now, ``zip`` with the groups
    would silently take the first 3. In ``after_load_checkpoint`` (before
    ``Runner.resume`` loads either) this hook converts ``checkpoint['optimizer']`` and
    maps each scheduler's per-group lists with it. ``before_train`` then checks that
    every scheduler has one value per group and stops with an error otherwise (a
    resume whose optimiser was not built when the checkpoint was read).
    """

    priority = 'VERY_HIGH'

    @staticmethod
    def _wrappers(runner):
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapperDict):
            return dict(wrapper.items())
        if isinstance(wrapper, OptimWrapper):
            return {None: wrapper}
        return {}  # not built yet

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get('optimizer')
        if not isinstance(saved, dict):
            return
        schedulers = checkpoint.get('param_schedulers')
        for name, wrapper in self._wrappers(runner).items():
            layouts = param_group_layouts(wrapper.optimizer)
            state = saved if name is None else saved.get(name)
            if layouts is None or not isinstance(state, dict) or 'param_groups' not in state:
                continue
            num_saved = len(state['param_groups'])
            converted, origin = layouts.convert(state, wrapper.optimizer.param_groups)
            if origin is None:
                continue
            if name is None:
                checkpoint['optimizer'] = converted
            else:
                saved[name] = converted
            # mmengine's wrapper shows its optimiser's groups plus, with several, a
            # last `base_param_settings` group (the schedulers scale it too)
            saved_base = state.get('base_param_settings') is not None
            base = len(wrapper.param_groups) > len(wrapper.optimizer.param_groups)
            if base and not saved_base:
                raise ValueError(
                    f'checkpoint optimizer{"" if name is None else "." + name}: '
                    f'{num_saved} saved parameter group without base_param_settings, '
                    f'{len(origin)} groups here: the schedulers cannot be mapped; resume '
                    "with paramwise_cfg.per_param_groups set to the checkpoint's layout")
            index = origin + ([num_saved] if base else [])
            own = schedulers if name is None or not isinstance(schedulers, dict) \
                else schedulers.get(name)
            if isinstance(own, list):
                own[:] = [convert_scheduler_state(s, index, num_saved + saved_base)
                          if isinstance(s, dict) else s for s in own]

    def before_train(self, runner) -> None:
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for scheduler in schedulers:
            values = getattr(scheduler, 'base_values', None)
            groups = getattr(getattr(scheduler, 'optimizer', None), 'param_groups', None)
            if isinstance(values, list) and groups is not None and len(values) != len(groups):
                raise RuntimeError(
                    f'{type(scheduler).__name__} holds {len(values)} per-group values '
                    f'(base_values) for an optimiser with {len(groups)} parameter groups: '
                    'the checkpoint was written with another group layout and the '
                    'optimiser was not built when it was loaded. Resume through '
                    'Runner.train() (it builds the optimiser first), or set '
                    "paramwise_cfg.per_param_groups to the checkpoint's layout.")
