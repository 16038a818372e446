"""Tests for DataSkipCounterHook (driven directly, with real DataSamples)."""
import io
from unittest.mock import MagicMock

import pytest
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample
from PIL import Image

from rils_mm.datasets import ImageTextDataset
from rils_mm.engine.hooks.data_skip_hook import DataSkipCounterHook


def make_batch(skips, reason='corrupt image: /d/x{}.jpg (truncated)'):
    samples = []
    for i, n in enumerate(skips):
        ds = DataSample()
        ds.set_metainfo(
            dict(num_skipped=n,
                 skip_reasons=[reason.format(f'{i}_{j}') for j in range(n)]))
        samples.append(ds)
    return dict(inputs=[None] * len(skips), data_samples=samples)


def make_runner(name):
    runner = MagicMock()
    runner.epoch = 2
    runner.message_hub = MessageHub.get_instance(name)
    return runner


def test_counts_logged_and_recorded():
    hook = HOOKS.build(dict(type='DataSkipCounterHook', num_examples=2))
    assert isinstance(hook, DataSkipCounterHook)
    runner = make_runner('skip_hook_counts')
    hook.before_train_epoch(runner)
    for i, skips in enumerate([[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 2, 0]]):
        hook.after_train_iter(runner, i, make_batch(skips))
    hook.after_train_epoch(runner)
    msg = runner.logger.info.call_args[0][0]
    assert msg.startswith(
        'data: 12 distinct samples used, 3 skipped, 0 repeats (20.0% bad) this epoch; '
        'skipped by kind: corrupt image 3; examples: ')
    # The first reasons are shown.
    assert '/d/x0_0.jpg' in msg and '/d/x2_0.jpg' in msg
    assert '/d/x2_1.jpg' not in msg
    assert runner.message_hub.get_info('train/data_used') == 12
    assert runner.message_hub.get_info('train/data_skipped') == 3
    assert runner.message_hub.get_info('train/data_skip_ratio') == 0.2
    assert runner.message_hub.get_info('train/data_skipped_by_kind') == {'corrupt image': 3}
    # A new epoch starts from zero.
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, make_batch([0, 0]))
    hook.after_train_epoch(runner)
    assert runner.logger.info.call_args[0][0] == (
        'data: 2 distinct samples used, 0 skipped, 0 repeats (0.0% bad) this epoch')


def test_raises_within_epoch_once_min_samples_seen():
    hook = DataSkipCounterHook(max_skip_ratio=0.5, min_samples=40,
                               check_interval=1)
    runner = make_runner('skip_hook_raise')
    hook.before_train_epoch(runner)
    # 8 used + 16 skipped = 24 < min_samples: no verdict yet.
    hook.after_train_iter(runner, 0, make_batch([2] * 8))
    with pytest.raises(RuntimeError) as e:
        hook.after_train_iter(runner, 1, make_batch([2] * 8))
    msg = str(e.value)
    assert '32 of 48 distinct training samples (66.7%)' in msg
    assert 'epoch 2' in msg and 'max_skip_ratio=50%' in msg
    assert 'First bad samples' in msg and 'corrupt image: /d/x0_0.jpg' in msg
    runner.logger.info.assert_not_called()  # raised before the epoch ended


def test_check_interval_and_threshold():
    hook = DataSkipCounterHook(max_skip_ratio=0.5, min_samples=10,
                               check_interval=3)
    runner = make_runner('skip_hook_interval')
    hook.before_train_epoch(runner)
    # 25% skipped: fine however long it runs.
    for i in range(6):
        hook.after_train_iter(runner, i, make_batch([1, 0, 0]))
    hook.after_train_epoch(runner)
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, make_batch([5, 5]))
    hook.after_train_iter(runner, 1, make_batch([5, 5]))  # not checked yet
    with pytest.raises(RuntimeError, match='were bad and skipped'):
        hook.after_train_iter(runner, 2, make_batch([5, 5]))
    # Also checked at the end of an epoch.
    hook = DataSkipCounterHook(min_samples=10, check_interval=100)
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, make_batch([3, 3, 3, 3]))
    with pytest.raises(RuntimeError, match='12 of 16'):
        hook.after_train_epoch(runner)
    # Batches without data samples are ignored.
    hook = DataSkipCounterHook(min_samples=1, check_interval=1)
    hook.after_train_iter(runner, 0, None)
    hook.after_train_iter(runner, 0, dict(inputs=[]))


def test_counts_from_real_dataset(tmp_path):
    buf = io.BytesIO()
    Image.new('RGB', (8, 8), (1, 2, 3)).save(buf, format='JPEG')
    (tmp_path / 'good.jpg').write_bytes(buf.getvalue())
    (tmp_path / 'bad.jpg').write_bytes(b'oops')
    (tmp_path / 'ann.csv').write_text(
        'filepath,caption\ngood.jpg,a\nbad.jpg,b\ngood.jpg,c\ngone.jpg,d\n')
    ds = ImageTextDataset(
        str(tmp_path / 'ann.csv'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='TokenizeText'),
                  dict(type='PackImageTextInputs')])
    batch = pseudo_collate([ds[i] for i in range(len(ds))])
    hook = DataSkipCounterHook(min_samples=1000)
    runner = make_runner('skip_hook_dataset')
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, batch)
    hook.after_train_epoch(runner)
    msg = runner.logger.info.call_args[0][0]
    # Rows 1 and 3 fail; rows 2 and 0 stand in for them and are repeats, not
    # distinct samples: 2 used, 2 skipped = 50 % of the 4 distinct samples.
    assert msg.startswith('data: 2 distinct samples used, 2 skipped, 2 repeats (50.0% bad)')
    assert 'bad.jpg' in msg and 'missing image' in msg and 'gone.jpg' in msg


def _image_set(tmp_path, num_good, num_bad, extra_rows=''):
    buf = io.BytesIO()
    Image.new('RGB', (8, 8), (1, 2, 3)).save(buf, format='JPEG')
    (tmp_path / 'good.jpg').write_bytes(buf.getvalue())
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    rows = [f'good.jpg,good {i}' for i in range(num_good)]
    rows += [f'bad.jpg,bad {i}' for i in range(num_bad)]
    (tmp_path / 'ann.csv').write_text('filepath,caption\n' + '\n'.join(rows) + '\n'
                                      + extra_rows)
    return ImageTextDataset(
        str(tmp_path / 'ann.csv'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='TokenizeText'),
                  dict(type='PackImageTextInputs')])


def test_ratio_over_distinct_samples_fires_on_mostly_corrupt_csv(tmp_path):
    # 90 % of the images are corrupt: every one is replaced by a good one, but
    # the ratio must be bad / distinct = 18 / 20, not 18 / (20 + 18).
    ds = _image_set(tmp_path, num_good=2, num_bad=18)
    hook = DataSkipCounterHook(max_skip_ratio=0.5, min_samples=20, check_interval=1)
    runner = make_runner('skip_hook_ninety')
    runner.train_loop.dataloader.dataset = ds
    hook.before_train_epoch(runner)
    with pytest.raises(RuntimeError) as e:
        for start in range(0, 20, 4):
            hook.after_train_iter(runner, start // 4,
                                  pseudo_collate([ds[i] for i in range(start, start + 4)]))
    assert '18 of 20 distinct training samples (90.0%)' in str(e.value)
    assert 'bad.jpg' in str(e.value)
    # Counted over the whole epoch: exactly 18 of 20.
    used, repeats, skipped, _, _ = DataSkipCounterHook._count(
        pseudo_collate([ds[i] for i in range(20)]))
    assert (used, repeats, skipped) == (2, 18, 18)


def test_rows_dropped_at_load_time_are_in_the_epoch_line(tmp_path):
    ds = _image_set(tmp_path, num_good=6, num_bad=0, extra_rows='good.jpg,\n,no image\n')
    assert ds.num_invalid_rows == 2
    hook = DataSkipCounterHook(min_samples=1000)
    runner = make_runner('skip_hook_dropped')
    runner.train_loop.dataloader.dataset = ds
    hook.before_train_epoch(runner)
    hook.after_train_iter(runner, 0, pseudo_collate([ds[i] for i in range(len(ds))]))
    hook.after_train_epoch(runner)
    msg = runner.logger.info.call_args[0][0]
    assert msg.startswith('data: 6 distinct samples used, 0 skipped, 2 rows dropped at load '
                          'time, 0 repeats (25.0% bad) this epoch')
    assert 'empty caption 1' in msg and 'missing image path 1' in msg
    assert 'ann.csv:8: empty caption' in msg
    assert runner.message_hub.get_info('train/data_dropped_rows') == 2
