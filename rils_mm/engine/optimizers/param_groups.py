"""Few optimiser parameter groups: one per set of identical hyper-parameters.

mmengine's :class:`~mmengine.optim.DefaultOptimWrapperConstructor` (and mmpretrain's
layer-decay constructor) make one parameter group *per parameter* as soon as a
``paramwise_cfg`` is given: 331 one-parameter AdamW groups for the paper's ViT-B/16 RILS
model (Sec. 3.3: weight decay 0.5 except biases, norms, 1-d parameters and the logit
scale). ``AdamW.step`` then runs its (fused or foreach) kernel once per group. The
constructors here build the same per-parameter groups and then merge the groups whose
hyper-parameters are identical (every key but ``params`` and the per-parameter name),
in order of first appearance and keeping the parameters' order: decay / no-decay, times
the layer-decay depths where a config uses layer decay, times any ``lr_mult`` /
``decay_mult`` difference. AdamW's update is element-wise, so each parameter gets the
same update bit for bit, and mmengine's parameter schedulers (which scale each group's
``lr`` from its own value) give every parameter the same learning rate as before.

Each merged group lists its parameters' names under ``param_names`` (torch's own key).
``paramwise_cfg=dict(per_param_groups=True, ...)`` keeps mmengine's one group per
parameter (e.g. to inspect ``optimizer.param_groups[i]['param_name']`` as mmpretrain's
layer-decay constructor writes it).

Checkpoints: an optimiser state written with the other layout (a checkpoint of mmengine's
per-parameter groups into merged groups, or the reverse) is mapped on load by parameter
identity (:class:`ParamGroupLayouts`, a ``load_state_dict`` pre-hook of the optimiser);
the group hyper-parameters (the scheduled ``lr``, ``initial_lr``...) come from the saved
groups, which must agree within each group they fold into.
:class:`~rils_mm.engine.hooks.ParamGroupLayoutHook` maps the parameter schedulers'
per-group values (``base_values``, ``_last_value``) of such a checkpoint as well.

Gradient clipping (``clip_grad``, no RILS config uses it) sums the squared norms in the
groups' order, which merging changes: the total norm can differ in its last bit.
"""
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import torch
from mmengine.optim import DefaultOptimWrapperConstructor
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = [
    'PER_PARAM_FLAG', 'merge_param_groups', 'ParamGroupLayouts', 'MergeParamGroupsMixin',
    'MergedParamGroupsOptimWrapperConstructor', 'param_group_layouts'
]

#: The ``paramwise_cfg`` key that keeps one parameter group per parameter.
PER_PARAM_FLAG = 'per_param_groups'
#: Group keys naming the parameters, not hyper-parameters.
NAME_KEYS = ('param_name', 'param_names')
_ATTR = 'rils_param_group_layouts'


def _frozen(value: Any) -> Hashable:
    """A hashable stand-in for a hyper-parameter value (tensors by identity)."""
    if isinstance(value, torch.Tensor):
        return ('tensor', id(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    if isinstance(value, dict):
        return ('dict', tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    try:
        hash(value)
    except TypeError:
        return ('id', id(value))
    return (type(value).__name__, value)


def hyper_key(group: dict) -> Hashable:
    """What two groups must share to be merged: every key but the parameters and names."""
    return tuple(sorted((k, _frozen(v)) for k, v in group.items()
                        if k != 'params' and k not in NAME_KEYS))


def merge_param_groups(groups: Sequence[dict], names: Dict[int, str]) -> List[dict]:
    """Merge ``groups`` with identical hyper-parameters (:func:`hyper_key`).

    Args:
        groups: Parameter groups (dicts with ``params``), e.g. mmengine's per-parameter ones.
        names: ``id(parameter) -> name``, for the merged groups' ``param_names``.

    Returns:
        The merged groups, in order of first appearance; each keeps its parameters in
        their order in ``groups`` and lists their names under ``param_names``.
    """
    merged: Dict[Hashable, dict] = {}
    for group in groups:
        key = hyper_key(group)
        if key not in merged:
            merged[key] = {k: v for k, v in group.items()
                           if k not in NAME_KEYS and k != 'params'}
            merged[key].update(params=[], param_names=[])
        params = group['params']
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        merged[key]['params'] += params
        merged[key]['param_names'] += [names.get(id(p), f'<param {id(p)}>') for p in params]
    return list(merged.values())


class ParamGroupLayouts:
    """The two layouts of one optimiser's parameters, to load a state of either.

    Args:
        layouts: ``{'per_param': [[p], [p], ...], 'merged': [[p, p, ...], ...]}``.
        current: The layout the optimiser was built with.
    """

    def __init__(self, layouts: Dict[str, List[List[torch.Tensor]]], current: str) -> None:
        if current not in layouts:
            raise ValueError(f'current layout {current!r} is not one of {sorted(layouts)}')
        self.layouts = layouts
        self.current = current

    @staticmethod
    def sizes(groups: Sequence) -> List[int]:
        return [len(g['params'] if isinstance(g, dict) else g) for g in groups]

    def convert(self, state_dict: dict, groups: Sequence[dict]
                ) -> Tuple[dict, Optional[List[int]]]:
        """Map an optimiser ``state_dict`` saved with the other layout onto ``groups``.

        Args:
            state_dict: What ``optimizer.state_dict()`` returned (other keys, such as
                the wrappers' loss scaler, are kept).
            groups: The optimiser's ``param_groups`` now.

        Returns:
            ``(state_dict, origin)``: the state for this optimiser and, for each of its
            groups, the saved group its hyper-parameters come from; ``(state_dict,
            None)`` unchanged when the saved groups already have this optimiser's sizes.

        Raises:
            ValueError: The saved group sizes match neither layout, or saved groups
                folding into one group here have different hyper-parameters.
        """
        saved = state_dict['param_groups']
        sizes = self.sizes(saved)
        if sizes == self.sizes(groups):
            return state_dict, None
        current = [list(g['params']) for g in groups]
        known = self.layouts[self.current]
        if len(current) != len(known) or any(
                len(a) != len(b) or any(x is not y for x, y in zip(a, b))
                for a, b in zip(current, known)):
            return state_dict, None  # groups changed since the build: torch decides
        source = next((n for n, layout in self.layouts.items()
                       if n != self.current and self.sizes(layout) == sizes), None)
        if source is None:
            raise ValueError(
                f'optimizer state_dict has {len(saved)} parameter groups of sizes '
                f'{_short(sizes)}; this optimiser has {len(groups)} ({self.current}: '
                f'{_short(self.sizes(groups))}), and neither its per-parameter nor its '
                'merged layout has those sizes: the checkpoint is of another model or '
                'paramwise_cfg')
        where = {}  # id(param) -> (saved group, saved index)
        for gi, (group, params) in enumerate(zip(saved, self.layouts[source])):
            for index, p in zip(group['params'], params):
                where[id(p)] = (gi, index)
        old_state = state_dict['state']
        new_state, new_groups, origin, n = {}, [], [], 0
        for group in groups:
            first = where[id(group['params'][0])][0]
            key = hyper_key(saved[first])
            indices = []
            for p in group['params']:
                gi, index = where[id(p)]
                if gi != first and hyper_key(saved[gi]) != key:
                    diff = sorted(k for k in set(saved[gi]) | set(saved[first])
                                  if k != 'params' and k not in NAME_KEYS
                                  and _frozen(saved[gi].get(k)) != _frozen(saved[first].get(k)))
                    raise ValueError(
                        f'optimizer state_dict: saved groups {first} and {gi} go into one '
                        f'{self.current} group here but differ in {diff}')
                if index in old_state:
                    new_state[n] = old_state[index]
                indices.append(n)
                n += 1
            new = {k: v for k, v in saved[first].items() if k not in NAME_KEYS}
            new.update({k: group[k] for k in NAME_KEYS if k in group}, params=indices)
            new_groups.append(new)
            origin.append(first)
        converted = dict(state_dict, state=new_state, param_groups=new_groups)
        return converted, origin

    def load_state_dict_pre_hook(self, optimizer, state_dict: dict) -> dict:
        """``Optimizer.register_load_state_dict_pre_hook``: convert, then let torch load."""
        return self.convert(state_dict, optimizer.param_groups)[0]


def _short(sizes: List[int]) -> str:
    return str(sizes) if len(sizes) <= 8 else f'[{", ".join(map(str, sizes[:8]))}, ...]'


def convert_scheduler_state(state: dict, index: List[int], num_saved: int) -> dict:
    """Map a parameter scheduler's per-group values (``base_values``,
    ``_last_value``), saved for ``num_saved`` groups, to the groups now: group ``i``
    takes saved value ``index[i]`` (mmengine's wrappers add a last ``base_param_settings``
    group of their own when there are several)."""
    state = dict(state)
    for key in ('base_values', '_last_value'):
        value = state.get(key)
        if isinstance(value, list) and len(value) == num_saved:
            state[key] = [value[i] for i in index]
    return state


def param_group_layouts(optimizer) -> Optional[ParamGroupLayouts]:
    """The :class:`ParamGroupLayouts` a constructor here attached to ``optimizer``."""
    return getattr(optimizer, _ATTR, None)


class MergeParamGroupsMixin:
    """For subclasses of :class:`DefaultOptimWrapperConstructor`: merge the parameter
    groups its ``add_params`` makes, unless ``paramwise_cfg.per_param_groups``."""

    def add_params(self, params: List[dict], module, prefix: str = '', **kwargs) -> None:
        top = not getattr(self, '_adding', False)
        self._adding = True
        try:
            super().add_params(params, module, prefix=prefix, **kwargs)  # type: ignore[misc]
        finally:
            if top:
                self._adding = False
        if not top:
            return
        names = {id(p): n for n, p in module.named_parameters()}
        merged = merge_param_groups(params, names)
        self._layouts = {'per_param': [list(g['params']) for g in params],
                         'merged': [list(g['params']) for g in merged]}
        if not self.paramwise_cfg.get(PER_PARAM_FLAG, False):  # type: ignore[attr-defined]
            params[:] = merged

    def __call__(self, model):
        self._layouts = None
        wrapper = super().__call__(model)  # type: ignore[misc]
        if self._layouts is not None:
            current = ('per_param' if self.paramwise_cfg.get(PER_PARAM_FLAG, False)
                       else 'merged')  # type: ignore[attr-defined]
            layouts = ParamGroupLayouts(self._layouts, current)
            optimizer = wrapper.optimizer
            setattr(optimizer, _ATTR, layouts)
            optimizer.register_load_state_dict_pre_hook(layouts.load_state_dict_pre_hook)
        self._layouts = None
        return wrapper


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsOptimWrapperConstructor(MergeParamGroupsMixin,
                                              DefaultOptimWrapperConstructor):
    """mmengine's :class:`DefaultOptimWrapperConstructor` (same ``paramwise_cfg``) with
    one parameter group per set of identical hyper-parameters (see the module).

    ``paramwise_cfg.per_param_groups=True`` keeps one group per parameter.
    """
