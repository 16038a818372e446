"""Mid-epoch resume continues at the next unseen batch (in-process, seconds); the
SIGKILL end-to-end version is tests/test_kill_resume.py."""
import copy
import io
import random

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader

from rils_mm.datasets import WebImageTextDataset
from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.engine import ResumableSampler
from rils_mm.testing import ImageToyModel, ToyData, ToyModel, write_tar_shard
from rils_mm.utils.checkpoint import register_checkpoint_safety

register_checkpoint_safety()


class _Record(Hook):

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.seen.append((runner.epoch, runner.iter, batch_idx,
                          [int(i) for i in data_batch['data_samples']]))


def _runner(work_dir, name, resume_from=None):
    torch.manual_seed(0)
    record = _Record()
    runner = Runner(
        model=ToyModel(noise=True),  # global torch RNG, like RILS' masking
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(dataset=ToyData(10, with_index=True),
                              sampler=dict(type='ResumableSampler', shuffle=True),
                              collate_fn=dict(type='pseudo_collate'), batch_size=3,
                              num_workers=0),  # 4 batches an epoch, the last of 1
        optim_wrapper=dict(type='FiniteStepOptimWrapper', optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           interval_iters=3)),
        custom_hooks=[dict(type='RNGStateHook'), record],
        randomness=dict(seed=0),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmpretrain')
    return runner, record


def test_resumable_sampler_skips_once():
    sampler = ResumableSampler(ToyData(10), shuffle=True, seed=3)
    full = list(sampler)
    sampler.skip_next(4)
    assert list(sampler) == full[4:] and len(sampler) == 10
    assert list(sampler) == full  # only the next epoch


@pytest.mark.slow  # a Runner
def test_mid_epoch_checkpoint_resumes_at_the_next_batch(tmp_path):
    runner, ref = _runner(tmp_path / 'ref', 'pos_ref')
    runner.train()
    final = copy.deepcopy(runner.model.state_dict())
    # iter_6.pth: epoch 1 (0-based) after 2 of its 4 batches.
    runner, rec = _runner(tmp_path / 'ref', 'pos_resumed', str(tmp_path / 'ref' / 'iter_6.pth'))
    runner.train()
    assert rec.seen == ref.seen[6:]  # same batches, same numbering, no replay
    assert rec.seen[0][:3] == (1, 6, 2) and runner.iter == 12
    for k, v in final.items():
        assert torch.equal(v, runner.model.state_dict()[k]), k


# ------------------------------------------------------------------ WebDataset
def _shards(tmp_path, n_shards=4, per_shard=6):
    buf = io.BytesIO()
    Image.fromarray(np.arange(192, dtype=np.uint8).reshape(8, 8, 3)).save(buf, format='PNG')
    return [write_tar_shard(tmp_path / f's{s}.tar',
                            [(f'{s}{i:03d}.{ext}', data) for i in range(per_shard)
                             for ext, data in (('png', buf.getvalue()),
                                               ('txt', f'c {s} {i}'.encode()))])
            for s in range(n_shards)]


@pytest.mark.parametrize('num_workers', [0, pytest.param(2, marks=pytest.mark.slow)])
def test_webdataset_skip_batches_continues_the_same_stream(tmp_path, num_workers):
    get_clip_tokenizer()
    urls = _shards(tmp_path)
    states = []

    def collate(samples):
        states.append((random.getstate(), np.random.get_state(), torch.get_rng_state()))
        return [(s['data_samples'].img_path, s['inputs'].float().sum().item()) for s in samples]

    def batches(skip=None):
        ds = WebImageTextDataset(
            urls, num_samples=24, batch_size=4, shuffle_buffer=8,
            pipeline=[dict(type='RandomResizedCrop', scale=6),  # random: numpy
                      dict(type='TokenizeText'), dict(type='PackImageTextInputs')])
        ds.set_epoch(1)
        if skip:
            ds.skip_batches(skip, 4, epoch=1)
        states.clear()
        loader = DataLoader(ds, batch_size=4, num_workers=num_workers, collate_fn=collate)
        return list(loader)

    np.random.seed(0)
    full = batches()
    assert len(full) == 6
    assert len({x for b in full for _, x in b}) > 1  # the crops differ
    after_batch = list(states)
    for skip in (3, 5):
        if num_workers == 0:
            # As after loading a checkpoint written after `skip` batches: the
            # generators are where the interrupted run left them. The replay of
            # the first batches must not move them, so the crops match too.
            py, np_state, _ = after_batch[skip - 1]
            random.setstate(py)
            np.random.set_state(np_state)
            assert batches(skip=skip) == full[skip:]
        else:  # each worker replays its stream, its own generators included
            assert batches(skip=skip) == full[skip:]


# ------------------------------------------------- CSV data with loader workers
class _RecordCrops(Hook):

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        names = [s.img_path.rsplit('/', 1)[-1] for s in data_batch['data_samples']]
        crops = [int(x.long().sum()) for x in data_batch['inputs']]  # the crop's pixels
        self.seen.append((runner.epoch, runner.iter, batch_idx, names, crops))


@pytest.fixture(scope='module')
def toy_csv(tmp_path_factory):
    from rils_mm.testing import generate_toy_corpus
    root = tmp_path_factory.mktemp('toy_csv')
    generate_toy_corpus(str(root), num_train=12, num_val=0, image_size=32, seed=1,
                        shard_size=12)
    return str(root)


def _csv_runner(work_dir, name, data_root, num_workers, resume_from=None):
    torch.manual_seed(0)
    record = _RecordCrops()
    runner = Runner(
        model=ImageToyModel(image_shape=(3, 8, 8), noise=True),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=dict(type='ImageTextDataset', data_root=data_root, ann_file='train.csv',
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='RandomResizedCrop', scale=8,
                                        crop_ratio_range=(0.2, 1.0)),
                                   dict(type='RandomFlip', prob=0.5),
                                   dict(type='PackInputs')]),
            sampler=dict(type='ResumableSampler', shuffle=True),
            collate_fn=dict(type='default_collate'), batch_size=3,  # 4 batches an epoch
            num_workers=num_workers, persistent_workers=False),
        optim_wrapper=dict(type='FiniteStepOptimWrapper', optimizer=dict(type='AdamW', lr=0.1)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=3),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           interval_iters=3)),
        custom_hooks=[dict(type='RNGStateHook'), dict(type='DatasetEpochHook'), record],
        randomness=dict(seed=0),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmpretrain')
    return runner, record


@pytest.mark.slow  # Runners, loader workers
def test_csv_with_workers_resumes_bit_exactly(toy_csv, tmp_path):
    """Per-sample augmentation seeds: loader workers (restarted by a resume in the
    middle of an epoch) crop and flip exactly as an uninterrupted run, and as a run
    without workers."""
    runner, ref = _csv_runner(tmp_path / 'ref', 'csv_ref', toy_csv, num_workers=2)
    runner.train()
    final = copy.deepcopy(runner.model.state_dict())
    # the crops are random: the same image is cropped differently in other epochs
    crops = {}
    for epoch, _, _, names, sums in ref.seen:
        for name, s in zip(names, sums):
            crops.setdefault(name, set()).add(s)
    assert sum(len(v) > 1 for v in crops.values()) >= len(crops) // 2

    # iter_6.pth: epoch 1 (0-based) after 2 of its 4 batches; the new workers
    # start at batch 3, so without per-sample seeds their crops would differ.
    runner, rec = _csv_runner(tmp_path / 'ref', 'csv_resumed', toy_csv, num_workers=2,
                              resume_from=str(tmp_path / 'ref' / 'iter_6.pth'))
    runner.train()
    assert rec.seen == ref.seen[6:]
    for k, v in final.items():
        assert torch.equal(v, runner.model.state_dict()[k]), k

    # Without workers (augmentations in the training process): the same run.
    runner, main = _csv_runner(tmp_path / 'main', 'csv_main', toy_csv, num_workers=0)
    runner.train()
    assert main.seen == ref.seen
    for k, v in final.items():
        assert torch.equal(v, runner.model.state_dict()[k]), k


# ------------------------------------------------------------- RNG state hook
def test_rng_state_hook_puts_back_this_ranks_states(tmp_path):
    from unittest.mock import MagicMock

    from rils_mm.engine.hooks import RNGStateHook
    hook = RNGStateHook()
    runner = MagicMock(_resume=True, iter=5)
    runner.train_loop.dataloader.__len__.return_value = 4
    ckpt = dict(meta=dict(epoch=1, iter=6))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    hook.gather_rank_states(runner)  # on every rank, by AtomicCheckpointHook
    hook.before_save_checkpoint(runner, ckpt)  # on rank 0
    after = (random.random(), np.random.rand(), torch.rand(1))
    state = ckpt['rng_state']
    assert state['world_size'] == 1 and len(state['ranks']) == 1 and state['mid_epoch']
    torch.save(ckpt, tmp_path / 'c.pth')  # loads with weights_only=True
    ckpt = torch.load(tmp_path / 'c.pth', weights_only=True)
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)  # as Runner.resume re-seeding, after the load
    hook.after_load_checkpoint(runner, ckpt)
    hook.before_train(runner)
    assert (random.random(), np.random.rand(), torch.rand(1)) == after


def test_rng_state_hook_with_another_number_of_ranks():
    from unittest.mock import MagicMock

    from rils_mm.engine.hooks import RNGStateHook
    from rils_mm.engine.hooks.rng_state_hook import get_rng_states
    hook = RNGStateHook()
    runner = MagicMock(_resume=True)
    two = [get_rng_states(), get_rng_states()]
    with pytest.raises(RuntimeError, match=r'written by 2 rank\(s\) in the middle of an epoch, '
                       r'this run has 1.*epoch_N\.pth'):
        hook.after_load_checkpoint(
            runner, dict(rng_state=dict(world_size=2, ranks=two, mid_epoch=True)))
    # At an epoch's end: a warning, and the generators seeded at start-up are kept.
    hook.after_load_checkpoint(
        runner, dict(rng_state=dict(world_size=2, ranks=two, mid_epoch=False)))
    assert 'written by 2 rank(s), this run has 1' in runner.logger.warning.call_args[0][0]
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    hook.before_train(runner)
    assert torch.equal(torch.rand(1), expected)
