from .layer_decay import BackboneLayerDecayOptimWrapperConstructor
from .param_groups import (
                           PER_PARAM_FLAG,
                           MergedParamGroupsOptimWrapperConstructor,
                           ParamGroupLayouts,
                           merge_param_groups,
                           param_group_layouts,
)

__all__ = [
    'BackboneLayerDecayOptimWrapperConstructor', 'MergedParamGroupsOptimWrapperConstructor',
    'PER_PARAM_FLAG', 'ParamGroupLayouts', 'merge_param_groups', 'param_group_layouts'
]
