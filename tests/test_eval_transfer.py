"""ImageNet linear-probe and fine-tune configs (Table 1, mmpretrain's MAE recipes with
RILSViT): they load the RILS encoder tensor by tensor and train 2 iterations on toy data."""
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import rils_mm  # noqa: F401
from rils_mm.testing import generate_toy_corpus, tiny_rils_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG_DIR = osp.join(ROOT, 'configs', 'benchmarks', 'classification')
TINY_ARCH = dict(embed_dims=64, num_layers=2, num_heads=4, feedforward_channels=128)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('transfer')
    corpus = generate_toy_corpus(str(root / 'toy'), num_train=8, num_val=16, image_size=32,
                                 seed=2, shard_size=8)
    folder = root / 'folder'
    for row in open(corpus['val_csv']).read().split()[1:]:
        path, label = row.split(',')
        (folder / f'{int(label):02d}').mkdir(parents=True, exist_ok=True)
        shutil.copy(osp.join(corpus['root'], path), folder / f'{int(label):02d}')
    torch.manual_seed(0)
    model = MODELS.build(tiny_rils_cfg(img_size=32))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.dtype.is_floating_point:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ckpt = root / 'rils.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    backbone = {k[9:]: v.clone() for k, v in model.state_dict().items()
                if k.startswith('backbone.')}
    return dict(root=root, folder=str(folder), ckpt=str(ckpt), backbone=backbone,
                num_classes=len(os.listdir(folder)))


def _toy_cfg(name, setup, work_dir):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    cfg.work_dir = str(work_dir)
    bb = cfg.model.backbone
    bb.update(arch=TINY_ARCH, img_size=32, patch_size=8)
    bb.init_cfg.checkpoint = setup['ckpt']
    if bb.get('frozen_stages', -1) > 0:
        bb.frozen_stages = 2
    if cfg.model.get('neck'):
        cfg.model.neck.input_features = 64
    cfg.model.head.update(in_channels=64, num_classes=setup['num_classes'])
    cfg.data_preprocessor.num_classes = setup['num_classes']
    pipeline = cfg.train_dataloader.dataset.pipeline
    next(t for t in pipeline if t.type == 'RandomResizedCrop').scale = 32
    cfg.train_dataloader.update(batch_size=8, num_workers=0, persistent_workers=False,
                                drop_last=True)
    cfg.train_dataloader.dataset = dict(type='CustomDataset', data_root=setup['folder'],
                                        pipeline=pipeline)
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=True)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    for key in ('val_dataloader', 'val_evaluator', 'val_cfg', 'test_dataloader',
                'test_evaluator', 'test_cfg'):
        cfg[key] = None
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU; the recipe is otherwise kept
    cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(window_size=1)
    return cfg


def test_recipes_are_mae_recipes_with_the_rils_encoder():
    lin = Config.fromfile(osp.join(CFG_DIR, 'rils_vitb16_linear-probe_in1k.py'))
    assert lin.model.backbone.type == 'RILSViT' and lin.model.backbone.frozen_stages == 12
    assert lin.model.neck.type == 'ClsBatchNormNeck'
    assert lin.optim_wrapper.optimizer.type == 'LARS' and lin.train_cfg.max_epochs == 90
    ft = Config.fromfile(osp.join(CFG_DIR, 'rils_vitb16_finetune-100e_in1k.py'))
    assert ft.train_cfg.max_epochs == 100
    warmup, cosine = ft.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 5) and (cosine.begin, cosine.end) == (5, 100)
    assert ft.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert ft.model.backbone.drop_path_rate == 0.1
    assert ft.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8),
                                           dict(type='CutMix', alpha=1.0)]
    assert ft.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                      mode='original')
    assert any(t.type == 'RandAugment' for t in ft.train_dataloader.dataset.pipeline)
    for cfg in (lin, ft):
        assert cfg.data_preprocessor.mean[0] == pytest.approx(0.48145466 * 255)


@pytest.mark.slow
def test_linear_probe_trains_the_head_only(setup, tmp_path):
    runner = Runner.from_cfg(_toy_cfg('rils_vitb16_linear-probe_in1k.py', setup, tmp_path))
    runner.train()
    model = runner.model
    # the frozen encoder is exactly the checkpoint's after init and 2 LARS steps
    state = model.backbone.state_dict()
    for k, v in setup['backbone'].items():
        assert torch.equal(state[k], v), k
    assert runner.iter == 2
    head = model.head.layers.head.weight if hasattr(model.head, 'layers') else model.head.fc.weight
    assert head.requires_grad and not model.backbone.layers[0].attn.qkv.weight.requires_grad


@pytest.mark.slow
def test_fine_tune_trains_everything_with_layer_decay(setup, tmp_path):
    runner = Runner.from_cfg(_toy_cfg('rils_vitb16_finetune-100e_in1k.py', setup, tmp_path))
    # the checkpoint is loaded tensor by tensor before training starts
    runner._init_model_weights()
    state = runner.model.backbone.state_dict()
    # the recipe pools without the final norm (ln1) and normalises after pooling (ln2)
    assert sorted(set(setup['backbone']) - set(state)) == ['ln1.bias', 'ln1.weight']
    for k, v in setup['backbone'].items():
        assert k.startswith('ln1.') or torch.equal(state[k], v), k
    runner.train()
    assert runner.iter == 2
    after = runner.model.backbone.state_dict()
    changed = [k for k, v in setup['backbone'].items()
               if not k.startswith('ln1.') and not torch.equal(after[k], v)]
    assert 'layers.0.attn.qkv.weight' in changed and 'layers.1.ffn.layers.1.weight' in changed
    groups = runner.optim_wrapper.optimizer.param_groups
    names = {id(p): n for n, p in runner.model.named_parameters()}

    def group_of(name):
        return next(g for g in groups if any(names.get(id(p)) == name for p in g['params']))

    lr0 = group_of('backbone.layers.0.attn.qkv.weight')['lr']
    lr1 = group_of('backbone.layers.1.attn.qkv.weight')['lr']
    lr_head = group_of('head.fc.weight')['lr']
    assert lr0 / lr1 == pytest.approx(0.65) and lr1 / lr_head == pytest.approx(0.65)
    assert group_of('backbone.layers.0.attn.qkv.q_bias')['weight_decay'] == 0
    assert group_of('backbone.layers.0.attn.qkv.weight')['weight_decay'] > 0
