"""Long runs: per-epoch data counters over 25 toy epochs, and the memory curve's
measurement (rils_mm.benchmark.stream_memory) on a short stream."""
import io
import os
from collections import Counter
from unittest.mock import MagicMock

import pytest
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from PIL import Image

from rils_mm.benchmark.stream_memory import (
    process_memory,
    stream_memory_curve,
    write_jpeg_shards,
)
from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.datasets.webdataset import WebImageTextDataset
from rils_mm.engine.hooks.data_skip_hook import DataSkipCounterHook
from rils_mm.testing import write_tar_shard

PIPELINE = [dict(type='TokenizeText'), dict(type='PackImageTextInputs')]


def test_per_epoch_counters_match_the_samples_over_25_epochs(tmp_path):
    """4 shards of 1 corrupt + 6 good samples, 2 ranks: every epoch each rank's
    counts are its share, summed they are the 24 good samples and the 4 bad ones
    (the bad sample opens its shard, so it is always met before the good ones)."""
    get_clip_tokenizer()
    buf = io.BytesIO()
    Image.new('RGB', (8, 8), (200, 10, 10)).save(buf, format='JPEG')
    urls = [write_tar_shard(tmp_path / f's{s}.tar',
                            [(f'{s}bad.jpg', b'not a jpeg'), (f'{s}bad.txt', b'x')]
                            + [(f'{s}{i:02d}.{ext}', data) for i in range(6)
                               for ext, data in (('jpg', buf.getvalue()),
                                                 ('txt', f'c {s} {i}'.encode()))])
            for s in range(4)]
    good = {f'{s}{i:02d}' for s in range(4) for i in range(6)}
    hooks = [DataSkipCounterHook(min_samples=10 ** 6) for _ in range(2)]
    datasets = [WebImageTextDataset(urls, num_samples=24, batch_size=4, shuffle_buffer=0,
                                    pipeline=PIPELINE, rank=r, world_size=2) for r in range(2)]
    orders = set()
    for epoch in range(25):
        keys, totals = Counter(), Counter()
        for rank, (ds, hook) in enumerate(zip(datasets, hooks)):
            runner = MagicMock()
            runner.epoch = epoch
            runner.message_hub = MessageHub.get_instance(f'long_run_{rank}_{epoch}')
            runner.train_loop.dataloader.dataset = ds
            ds.set_epoch(epoch)
            hook.before_train_epoch(runner)
            samples = list(ds)
            for i in range(0, len(samples), 4):
                hook.after_train_iter(runner, i // 4, pseudo_collate(samples[i:i + 4]))
            hook.after_train_epoch(runner)
            hub = runner.message_hub
            assert hub.get_info('train/data_used') == len(ds) == 12
            totals.update(used=hub.get_info('train/data_used'),
                          skipped=hub.get_info('train/data_skipped'),
                          repeats=hub.get_info('train/data_repeats'))
            assert hub.get_info('train/data_skipped_by_kind') == \
                {'corrupt image': hub.get_info('train/data_skipped')}
            epoch_keys = [s['data_samples'].img_path.split('#')[1] for s in samples]
            keys.update(epoch_keys)
            orders.add((rank, tuple(epoch_keys)))
        assert totals == Counter(used=24, skipped=4, repeats=0), epoch
        assert keys == Counter(good), epoch  # every good sample once an epoch
    assert len(orders) > 2 * 10  # the shard order changes between epochs


def test_process_memory_reads_this_process():
    mem = process_memory(os.getpid())
    assert mem['rss'] > 10 << 20 and 0 < mem['pss'] <= mem['rss']
    assert process_memory(2 ** 22 + 12345) is None  # no such process


@pytest.mark.slow  # loader workers
def test_stream_memory_curve_covers_the_stream(tmp_path):
    urls = write_jpeg_shards(str(tmp_path), num_shards=4, per_shard=200, image_size=16)
    result = stream_memory_curve(urls, num_samples=640, num_workers=2, batch_size=32,
                                 every=128, image_size=16)
    assert result['samples'] == 640
    curve = result['curve']
    assert [p['samples'] for p in curve][:3] == [32, 128, 256]
    assert all(p['processes'] == 3 for p in curve[:3])  # the main process and 2 workers
    assert all(p['pss'] > 10 << 20 for p in curve)
    base = next(p for p in curve if p['samples'] >= 64)
    last = [p for p in curve if p['processes'] == base['processes']][-1]
    assert result['growth_pct'] == round(100 * (last['pss'] - base['pss']) / base['pss'], 2)
