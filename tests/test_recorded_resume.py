"""Checkpoints written before still resume exactly.

``tests/recorded/resume_mid_epoch/iter_15.pth`` was written in the middle of an
epoch (epoch 1, after batch 7 of 8) by the code as it was before the data and
resume layers were split into named parts; ``expected.json`` holds what that
code's uninterrupted run of the same config trained (the batches, the final
weights). Every resume participant is in it: the loop position, each rank's
random states, the WebDataset stream (2 loader workers, their roles rotated on
resume), the optimiser wrapper's count of skipped non-finite steps and the
bad-sample counts.

Re-record (only if the run itself is meant to change)::

    python tests/test_recorded_resume.py --record
"""
import argparse
import copy
import datetime
import io
import json
import os
import os.path as osp
import platform
import shutil
import sys
import tempfile

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from PIL import Image

from rils_mm.testing import write_tar_shard
from rils_mm.utils.checkpoint import load_from_local, register_checkpoint_safety

register_checkpoint_safety()

RECORDED = osp.join(osp.dirname(osp.abspath(__file__)), 'recorded', 'resume_mid_epoch')
CHECKPOINT = 'iter_15.pth'  # epoch 1 (0-based), 7 of its 8 batches trained
NUM_SHARDS, PER_SHARD, BATCH, EPOCHS = 4, 6, 3, 3
BAD_KEY = '1002'  # a corrupt image: skipped, counted, a repeat fills the epoch
NAN_KEY = '0004'  # the loss of a batch holding it is NaN: the step is skipped


def write_shards(folder) -> list:
    """4 shards of 6 PNG pairs (8 x 8 px, exact to decode on any machine)."""
    urls = []
    for s in range(NUM_SHARDS):
        members = []
        for i in range(PER_SHARD):
            key = f'{s}{i:03d}'
            rgb = np.random.default_rng([s, i]).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, format='PNG')
            image = b'not an image' if key == BAD_KEY else buf.getvalue()
            members += [(f'{key}.png', image), (f'{key}.txt', f'caption {s} {i}'.encode())]
        urls.append(write_tar_shard(osp.join(str(folder), f'train-{s:06d}.tar'), members))
    return urls


class PixelModel(BaseModel):
    """``loss = mean(((w . f) * noise)^2)``, ``f`` the per-channel pixel sums of the
    random crops: float64 and integer sums, so the numbers are the same on any CPU;
    the noise is drawn from the global torch generator (as RILS' masks)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, -0.25, 1.0], dtype=torch.float64))

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(inputs)
        f = x.long().sum((2, 3)).double() / (255 * 36)
        noise = torch.rand(x.shape[0], dtype=torch.float64)
        loss = ((f * self.w).sum(1) * noise).pow(2).mean()
        if any(s.img_path.endswith('#' + NAN_KEY) for s in data_samples):
            loss = loss * float('nan')
        return dict(loss=loss)


class _Record(Hook):

    def __init__(self):
        self.seen = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        keys = [s.img_path.rsplit('#', 1)[1] + ('*' if s.is_repeat else '')
                for s in data_batch['data_samples']]
        self.seen.append([runner.epoch, runner.iter, batch_idx, keys])


def build_runner(work_dir, urls, name, resume_from=None):
    record = _Record()
    runner = Runner(
        model=PixelModel(),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=dict(type='WebImageTextDataset', urls=urls, num_samples=24,
                         batch_size=BATCH, shuffle_buffer=4,
                         pipeline=[dict(type='RandomCrop', crop_size=6),
                                   dict(type='PackInputs')]),
            sampler=None, batch_size=BATCH, num_workers=2, persistent_workers=False,
            collate_fn=dict(type='pseudo_collate')),
        optim_wrapper=dict(type='FiniteStepOptimWrapper',
                           optimizer=dict(type='AdamW', lr=0.05)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=EPOCHS),
        default_hooks=dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                           interval_iters=5)),
        # the old registry name of the epoch hook: configs written before keep working
        custom_hooks=[dict(type='RNGStateHook'), dict(type='WebDatasetEpochHook'),
                      dict(type='DataSkipCounterHook', min_samples=1000), record],
        randomness=dict(seed=0),
        resume=resume_from is not None,
        load_from=resume_from,
        default_scope='mmpretrain')
    return runner, record


def _data_counts(runner):
    info = runner.message_hub.runtime_info
    return {k: info[k] for k in ('train/data_used', 'train/data_skipped',
                                 'train/data_repeats', 'train/data_skipped_by_kind')}


@pytest.mark.slow
def test_a_checkpoint_of_the_earlier_code_resumes_bit_identically(tmp_path):
    with open(osp.join(RECORDED, 'expected.json')) as f:
        expected = json.load(f)
    urls = write_shards(tmp_path)
    runner, ref = build_runner(tmp_path / 'ref', urls, 'recorded_ref')
    runner.train()
    final = copy.deepcopy(runner.model.state_dict())
    final_optim = copy.deepcopy(runner.optim_wrapper.state_dict())
    counts = _data_counts(runner)
    # Today's uninterrupted run is the recorded one: the same batches in the same
    # order (repeats and all), the same weights up to float64 rounding.
    assert ref.seen == expected['seen']
    assert torch.allclose(final['w'], torch.tensor(expected['final_w'], dtype=torch.float64),
                          rtol=0, atol=1e-12)
    assert final_optim['nonfinite_steps'] == expected['nonfinite_steps'] == EPOCHS
    assert counts == expected['data_counts']

    ckpt = load_from_local(osp.join(RECORDED, CHECKPOINT))
    assert (ckpt['meta']['epoch'], ckpt['meta']['iter']) == (1, 15)
    runner, rec = build_runner(tmp_path / 'resumed', urls, 'recorded_resumed',
                               resume_from=osp.join(RECORDED, CHECKPOINT))
    runner.train()
    assert rec.seen == ref.seen[15:]  # batch 8 of epoch 1 onwards, nothing replayed
    assert rec.seen[0][:3] == [1, 15, 7]
    for k, v in final.items():
        assert torch.equal(v, runner.model.state_dict()[k]), k
    resumed_optim = runner.optim_wrapper.state_dict()
    assert resumed_optim['nonfinite_steps'] == final_optim['nonfinite_steps']
    for pid, st in final_optim['state'].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v),
                               torch.as_tensor(resumed_optim['state'][pid][k])), (pid, k)
    assert _data_counts(runner) == counts  # the last epoch's counts, skip included


def _record() -> None:
    """Write the fixture with the code on ``sys.path`` (run from the repo root)."""
    tmp = tempfile.mkdtemp()
    try:
        urls = write_shards(tmp)
        runner, ref = build_runner(osp.join(tmp, 'work'), urls, 'recorded')
        runner.train()
        os.makedirs(RECORDED, exist_ok=True)
        shutil.copy(osp.join(tmp, 'work', CHECKPOINT), osp.join(RECORDED, CHECKPOINT))
        expected = dict(
            note=(f'written {datetime.date.today()} by python tests/test_recorded_resume.py '
                  f'--record (torch {torch.__version__}, {platform.machine()})'),
            seen=ref.seen,
            final_w=runner.model.w.detach().tolist(),
            nonfinite_steps=runner.optim_wrapper.num_nonfinite_steps,
            data_counts=_data_counts(runner))
        with open(osp.join(RECORDED, 'expected.json'), 'w') as f:
            json.dump(expected, f, indent=1)
            f.write('\n')
    finally:
        shutil.rmtree(tmp)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--record', action='store_true', help='write the fixture')
    if parser.parse_args().record:
        import rils_mm  # noqa: F401 (registers the types)
        _record()
    else:
        sys.exit(pytest.main([__file__]))
