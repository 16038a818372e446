"""The shipped toy shard config trains out of the box on the shards the toy corpus writes
(img2dataset layout), through mmengine's Runner, seeing every pair once per epoch."""
import math
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import rils_mm  # noqa: F401
from rils_mm.testing import generate_toy_corpus, shrink_toy_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy_wds.py')


class RecordKeys(Hook):
    """Collects the ``<shard>#<key>`` of every training sample."""

    def __init__(self):
        self.keys = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.keys += [ds.img_path for ds in data_batch['data_samples']]
        self.losses = {k: float(v) for k, v in outputs.items()}


def test_wds_config_matches_the_quickstart_model_and_the_corpus_layout():
    cfg = Config.fromfile(CONFIG)
    toy = Config.fromfile(osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py'))
    assert cfg.model == toy.model and cfg.optim_wrapper == toy.optim_wrapper
    loader = cfg.train_dataloader
    assert loader.sampler is None  # the data set splits shards itself
    assert loader.dataset.type == 'WebImageTextDataset'
    assert loader.dataset.batch_size == loader.batch_size
    assert [t.type for t in loader.dataset.pipeline] == [
        'RandomResizedCrop', 'TokenizeText', 'PackImageTextInputs']  # no LoadImageFromFile
    # the shards `tools/make_toy_corpus.py data/toy` writes (2000 pairs, 500 a shard)
    assert loader.dataset.urls == 'data/toy/shards/train-{000000..000003}.tar'
    assert loader.dataset.num_samples == 2000
    assert 'DatasetEpochHook' in {h.type for h in cfg.custom_hooks}


@pytest.mark.slow
def test_wds_config_trains_on_toy_shards(tmp_path):
    root = str(tmp_path / 'toy')
    # 64 pairs in 4 shards of 16: the same shard names as the full corpus
    corpus = generate_toy_corpus(root, num_train=64, num_val=16, image_size=32,
                                 shard_size=16)
    cfg = Config.fromfile(CONFIG)
    dataset = cfg.train_dataloader.dataset
    dataset.urls = dataset.urls.replace('data/toy/', root + '/')
    assert dataset.urls == corpus['shard_pattern']
    dataset.num_samples = 64
    dataset.batch_size = cfg.train_dataloader.batch_size = 16
    dataset.pipeline[0].scale = 32
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = root
        cfg[key].dataset.pipeline[1].scale = 32
        cfg[key].dataset.pipeline[2].crop_size = 32
    shrink_toy_model(cfg.model)
    cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = 2
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0,
                                end=8)]
    cfg.default_hooks.checkpoint.interval = 2
    cfg.work_dir = str(tmp_path / 'work')
    recorder = RecordKeys()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(recorder)
    runner.train()

    assert runner.iter == 2 * 64 // 16  # len(dataloader) exact: 4 batches per epoch
    for epoch in range(2):  # every pair exactly once per epoch, from the shards
        keys = recorder.keys[64 * epoch:64 * (epoch + 1)]
        assert len(set(keys)) == 64
        assert {k.split('#')[0] for k in keys} == set(corpus['shards'])
    assert recorder.keys[:64] != recorder.keys[64:]  # reshuffled per epoch
    assert all(math.isfinite(v) for v in recorder.losses.values())
    assert {'loss_contrastive', 'loss_recon'} <= set(recorder.losses)
    assert 0 <= runner.message_hub.get_scalar('val/accuracy/top1').current() <= 100
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_2.pth'))
