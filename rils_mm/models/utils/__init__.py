from .dist import all_reduce_sum, gather_features, get_rank, get_world_size

__all__ = ['gather_features', 'all_reduce_sum', 'get_rank', 'get_world_size']
