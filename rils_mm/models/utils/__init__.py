from .dist import (
                   all_reduce_sum,
                   at_least_fp32,
                   gather_features,
                   get_rank,
                   get_world_size,
                   local_offset,
                   mean_value_local_grad,
)

__all__ = [
    'at_least_fp32', 'gather_features', 'all_reduce_sum', 'get_rank', 'get_world_size',
    'local_offset', 'mean_value_local_grad'
]
