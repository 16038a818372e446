"""The dense transfer configs (paper Tables 2, 3, 5): ViTDet Mask R-CNN on COCO,
LVIS v1 and low-shot COCO, UperNet on ADE20K. Each family loads a RILS
pre-training checkpoint (every encoder tensor kept), trains a few iterations with a
tiny backbone on toy data in the real formats, and evaluates with mmdet's / mmseg's
own metrics."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

import rils_mm  # noqa: F401
from rils_mm.datasets.coco_low_shot import write_low_shot_files
from rils_mm.testing import tiny_rils_cfg
from rils_mm.testing.toy_corpus import get_classnames
from rils_mm.testing.toy_corpus.dense import generate_toy_ade, generate_toy_coco, generate_toy_lvis

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SIZE = 128  # toy image side; patch 16 -> an 8x8 token grid
CLASSES = tuple(get_classnames())
DET = 'configs/mmdet/'
SEG = 'configs/mmseg/'


@pytest.fixture(autouse=True)
def _keep_default_scope():
    """Runners and init_default_scope make mmdet / mmseg the current default scope;
    give the other test modules their (mmpretrain) scope back afterwards."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(scope='module')
def rils_ckpt(tmp_path_factory):
    """A tiny RILS pre-training checkpoint (4 blocks, patch 16, 64 px -> a 4x4 grid)."""
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        rils = PRETRAIN_MODELS.build(tiny_rils_cfg(img_size=64, patch_size=16, depth=4))
    rils.init_weights()
    with torch.no_grad():
        for p in rils.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp('ckpt') / 'rils_tiny.pth'
    torch.save({'state_dict': rils.state_dict(), 'meta': {}}, path)
    return str(path)


def _swap_size(obj, sizes):
    """Replace the paper's image sizes in pipelines by toy ones (``sizes``: old -> new)."""
    if isinstance(obj, dict):
        return {k: _swap_size(v, sizes) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if all(isinstance(v, int) for v in obj) and tuple(obj) in sizes:
            return type(obj)(sizes[tuple(obj)])
        return type(obj)(_swap_size(v, sizes) for v in obj)
    return obj


def tiny_det(cfg, ckpt, work_dir, num_classes=len(CLASSES)):
    """The config's model, tiny: 4-block ViT width 64 (blocks 1 and 3 global, 0 and 2
    in 4x4 windows), 32-channel pyramid and heads, few proposals."""
    m = cfg.model
    m.backbone.update(
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128),
        img_size=SIZE, window_size=4, global_attn_indexes=(1, 3), out_indices=(3, ))
    m.backbone.init_cfg.checkpoint = ckpt
    m.data_preprocessor.batch_augments[0].size = (SIZE, SIZE)
    m.neck.update(backbone_channel=64, in_channels=[16, 32, 64, 64], out_channels=32)
    m.rpn_head.update(in_channels=32, feat_channels=32)
    rh = m.roi_head
    rh.bbox_roi_extractor.out_channels = 32
    rh.mask_roi_extractor.out_channels = 32
    rh.bbox_head.update(in_channels=32, conv_out_channels=32, fc_out_channels=64,
                        num_classes=num_classes)
    if rh.bbox_head.loss_cls.type == 'SeesawLoss':
        rh.bbox_head.loss_cls.num_classes = num_classes
    rh.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=num_classes)
    m.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=64)
    m.train_cfg.rcnn.sampler.num = 32
    m.test_cfg.rpn.update(nms_pre=200, max_per_img=32)
    m.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)  # always some detections
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = None
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=2)]
    # no validation inside train(): the test calls runner.val() once
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_begin=2)
    sizes = {(1024, 1024): (SIZE, SIZE)}
    cfg.train_dataloader.dataset = _swap_size(cfg.train_dataloader.dataset.to_dict(), sizes)
    cfg.val_dataloader.dataset = _swap_size(cfg.val_dataloader.dataset.to_dict(), sizes)
    for dl in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[dl].update(batch_size=2, num_workers=0, persistent_workers=False)
    return cfg


def _det_data(cfg, root, train_ann, val_ann, lvis=False):
    tr = cfg.train_dataloader.dataset
    inner = tr['dataset'] if 'dataset' in tr else tr  # ClassBalancedDataset for LVIS
    inner.update(data_root=root, ann_file=train_ann, metainfo=dict(classes=CLASSES),
                 data_prefix=dict(img='' if lvis else 'train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4))
    cfg.val_dataloader.dataset.update(data_root=root, ann_file=val_ann,
                                      metainfo=dict(classes=CLASSES),
                                      data_prefix=dict(img='' if lvis else 'val2017/'))
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = osp.join(root, val_ann)
    cfg.test_evaluator = cfg.val_evaluator
    return cfg


def _encoder_equals_checkpoint(model, ckpt):
    """Every encoder tensor of the model equals the checkpoint's (positions resized)."""
    sd = torch.load(ckpt, weights_only=True)['state_dict']
    for name, value in model.backbone.state_dict().items():
        if 'rel_pos' in name:
            continue  # added by ViTDet, zero-initialised
        ref = sd['backbone.' + name]
        if name == 'pos_embed' and ref.shape != value.shape:
            ref = resize_pos_embed(ref, (4, 4), model.backbone.patch_resolution, 'bicubic', 1)
            torch.testing.assert_close(value, ref)
        else:
            assert torch.equal(value, ref), name


def _run(cfg):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, runner.val()


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory):
    return generate_toy_coco(str(tmp_path_factory.mktemp('coco')), num_train=8, num_val=4,
                             image_size=SIZE)


@pytest.mark.parametrize('name', [
    'vitdet_mask_rcnn_rils_vitb16_coco_25e.py', 'vitdet_mask_rcnn_rils_vitb16_lvis_25e.py',
    'vitdet_mask_rcnn_rils_vitb16_coco_lowshot_1pct_12e.py'
])
def test_det_configs_load_every_encoder_tensor_of_a_rils_checkpoint(name, rils_ckpt):
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = tiny_det(Config.fromfile(osp.join(ROOT, DET, name)), rils_ckpt, '/tmp/unused')
    model = MODELS.build(cfg.model)
    model.init_weights()
    _encoder_equals_checkpoint(model, rils_ckpt)
    assert model.backbone.patch_resolution == (8, 8)


def test_seg_config_loads_every_encoder_tensor_of_a_rils_checkpoint(rils_ckpt):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    cfg = tiny_seg(Config.fromfile(osp.join(ROOT, SEG, SEG_CFG)), rils_ckpt, '/tmp/unused')
    model = MODELS.build(cfg.model)
    model.init_weights()
    _encoder_equals_checkpoint(model, rils_ckpt)


def test_toy_coco_annotations_score_perfect_ap_as_predictions(toy_coco):
    """The toy boxes, polygons and RLEs are consistent COCO: fed back as predictions,
    mmdet's CocoMetric gives bbox and segm AP 1."""
    from mmdet.evaluation import CocoMetric
    from pycocotools import mask as mask_utils
    coco = json.load(open(toy_coco['val_ann']))
    metric = CocoMetric(ann_file=toy_coco['val_ann'], metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    for img in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == img['id']]
        masks = []
        for a in anns:
            s = a['segmentation']
            rle = mask_utils.frPyObjects(s, 128, 128) if isinstance(s, list) else \
                dict(s, counts=s['counts'].encode())
            rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
            masks.append(mask_utils.decode(rle))
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
        pred = dict(bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    scores=torch.ones(len(anns)),
                    labels=torch.tensor([a['category_id'] - 1 for a in anns]),
                    masks=torch.from_numpy(np.stack(masks)).bool())
        metric.process({}, [dict(img_id=img['id'], ori_shape=(SIZE, SIZE),
                                 pred_instances=pred)])
    res = metric.evaluate(len(coco['images']))
    assert res['coco/bbox_mAP'] == pytest.approx(1.0)
    assert res['coco/segm_mAP'] == pytest.approx(1.0)


@pytest.mark.slow
def test_coco_config_trains_and_evaluates_bbox_and_segm_ap(toy_coco, rils_ckpt, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_coco_25e.py'))
    cfg = _det_data(tiny_det(cfg, rils_ckpt, tmp_path), toy_coco['root'],
                    'annotations/instances_train2017.json',
                    'annotations/instances_val2017.json')
    runner, metrics = _run(cfg)
    assert runner.iter == 4  # 8 images, batch 2, one epoch
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50'):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    # layer-wise lr decay 0.7 over 4 blocks: embedding 0.7^5, block i 0.7^(4-i), heads 1
    groups = runner.optim_wrapper.optimizer.param_groups
    scale = {n: g['lr_scale'] for g in groups for n in g['param_names']}  # merged groups
    assert scale['backbone.patch_embed.projection.weight'] == pytest.approx(0.7**5)
    assert scale['backbone.layers.0.attn.qkv.weight'] == pytest.approx(0.7**4)
    assert scale['backbone.layers.3.attn.rel_pos_h'] == pytest.approx(0.7)
    assert scale['roi_head.bbox_head.fc_cls.weight'] == 1.0
    wd = {n: g['weight_decay'] for g in groups for n in g['param_names']}
    assert wd['backbone.pos_embed'] == 0 and wd['backbone.layers.0.ln1.weight'] == 0
    assert wd['backbone.layers.0.attn.qkv.weight'] == pytest.approx(0.1)


@pytest.mark.slow
def test_lvis_config_trains_and_evaluates_with_lvis_metric(rils_ckpt, tmp_path):
    toy = generate_toy_lvis(str(tmp_path / 'lvis'), num_train=8, num_val=4, image_size=SIZE)
    cfg = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_lvis_25e.py'))
    assert cfg.train_dataloader.dataset.type == 'ClassBalancedDataset'
    assert cfg.train_dataloader.dataset.oversample_thr == 1e-3
    assert cfg.model.roi_head.bbox_head.loss_cls.type == 'SeesawLoss'
    cfg = _det_data(tiny_det(cfg, rils_ckpt, tmp_path / 'work'), toy['root'],
                    'annotations/lvis_v1_train.json', 'annotations/lvis_v1_val.json',
                    lvis=True)
    runner, metrics = _run(cfg)
    for key in ('lvis/bbox_AP', 'lvis/segm_AP', 'lvis/bbox_APr'):
        assert key in metrics and -1.0 <= metrics[key] <= 1.0, (key, metrics)


@pytest.mark.slow
def test_low_shot_config_trains_on_a_sampled_annotation_file(toy_coco, rils_ckpt, tmp_path):
    ann_dir = osp.join(toy_coco['root'], 'annotations')
    path, = write_low_shot_files(toy_coco['train_ann'], ann_dir, fractions=[0.5], seed=0)
    cfg = Config.fromfile(osp.join(ROOT, DET,
                                   'vitdet_mask_rcnn_rils_vitb16_coco_lowshot_50pct_12e.py'))
    assert cfg.train_dataloader.dataset.ann_file.endswith(osp.basename(path))
    full = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_coco_25e.py'))
    assert cfg.model == full.model and cfg.train_cfg.max_epochs == 12
    cfg = _det_data(tiny_det(cfg, rils_ckpt, tmp_path), toy_coco['root'],
                    'annotations/' + osp.basename(path),
                    'annotations/instances_val2017.json')
    runner, metrics = _run(cfg)
    assert len(runner.train_dataloader.dataset) == 4  # half of the 8 training images
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0


SEG_CFG = 'upernet_rils_vitb16_ade20k_512x512_160k.py'


def tiny_seg(cfg, ckpt, work_dir):
    m = cfg.model
    m.backbone.update(
        arch=dict(embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128),
        img_size=SIZE, out_indices=(0, 1, 2, 3))
    m.backbone.init_cfg.checkpoint = ckpt
    m.data_preprocessor.size = (SIZE, SIZE)
    m.neck.embed_dim = 64
    m.neck.norm_cfg = dict(type='BN', requires_grad=True)  # SyncBN needs a process group
    m.decode_head.update(in_channels=[64] * 4, channels=32, num_classes=len(CLASSES),
                         norm_cfg=dict(type='BN', requires_grad=True))
    m.auxiliary_head.update(in_channels=64, channels=16, num_classes=len(CLASSES),
                            norm_cfg=dict(type='BN', requires_grad=True))
    m.test_cfg = dict(mode='slide', crop_size=(SIZE, SIZE), stride=(85, 85))
    cfg.optim_wrapper.type = 'OptimWrapper'
    cfg.work_dir = str(work_dir)
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                end=2)]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3, val_begin=4)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = None
    return cfg


@pytest.mark.slow
def test_ade20k_config_trains_and_evaluates_miou(rils_ckpt, tmp_path):
    toy = generate_toy_ade(str(tmp_path / 'ade'), num_train=6, num_val=3, image_size=SIZE)
    cfg = tiny_seg(Config.fromfile(osp.join(ROOT, SEG, SEG_CFG)), rils_ckpt, tmp_path / 'w')
    for split, dl in (('training', cfg.train_dataloader), ('validation', cfg.val_dataloader)):
        dl.dataset = _swap_size(dl.dataset.to_dict(), {(512, 512): (SIZE, SIZE),
                                                       (2048, 512): (4 * SIZE, SIZE)})
        dl.dataset.update(type='BaseSegDataset', data_root=toy['root'],
                          img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
                          metainfo=dict(classes=CLASSES),
                          data_prefix=dict(img_path=f'images/{split}',
                                           seg_map_path=f'annotations/{split}'))
        dl.update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
    runner, metrics = _run(cfg)
    assert runner.iter == 3
    assert 0.0 <= metrics['mIoU'] <= 100.0, metrics


def test_toy_instances_of_occluded_shapes_are_rle_of_the_visible_part():
    import dataclasses

    from pycocotools import mask as mask_utils

    from rils_mm.testing.toy_corpus import corpus_scene, render_instance_masks
    from rils_mm.testing.toy_corpus.dense import _instances
    scene, _ = corpus_scene(0, 'train', 0)
    top = dataclasses.replace(scene.objects[0], cx=scene.objects[0].cx + 0.05,
                              colour='green' if scene.objects[0].colour != 'green' else 'red')
    scene = dataclasses.replace(scene, objects=[scene.objects[0], top])
    below, above = _instances(scene, 64, image_id=1, next_ann_id=1)
    visible = render_instance_masks(scene, 64)
    assert isinstance(above['segmentation'], list)  # whole shape: its polygon
    rle = dict(below['segmentation'], counts=below['segmentation']['counts'].encode())
    assert np.array_equal(mask_utils.decode(rle).astype(bool), visible[0])
    assert below['area'] == visible[0].sum() and above['area'] == visible[1].sum()
    ys, xs = np.nonzero(visible[0])
    assert below['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                             ys.max() - ys.min() + 1]


def test_toy_ade_maps_score_perfect_miou_as_predictions(tmp_path):
    """The toy label maps are ADE20K-format: 0 is ignored, class k is stored as k + 1;
    fed back as predictions mmseg's IoUMetric gives mIoU 100 over present classes."""
    from mmseg.evaluation import IoUMetric
    from PIL import Image
    toy = generate_toy_ade(str(tmp_path / 'ade'), num_train=1, num_val=4, image_size=64)
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=CLASSES)
    seen = set()
    for name in sorted(__import__('os').listdir(toy['val_seg'])):
        raw = np.asarray(Image.open(osp.join(toy['val_seg'], name)))
        assert raw.dtype == np.uint8 and raw.max() <= len(CLASSES)
        label = raw.astype(np.int64) - 1
        label[raw == 0] = 255  # reduce_zero_label
        seen |= set(np.unique(label[label != 255]).tolist())
        gt = torch.from_numpy(label)
        metric.process({}, [dict(pred_sem_seg=dict(data=gt[None]),
                                 gt_sem_seg=dict(data=gt[None]))])
    assert len(seen) >= 2
    assert metric.evaluate(4)['mIoU'] == pytest.approx(100.0)


def test_configs_say_what_the_paper_and_vitdet_mae_recipes_say():
    coco = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_coco_25e.py'))
    assert coco.custom_imports.imports[0] == 'rils_mm'
    bb = coco.model.backbone
    assert bb.type == 'mmpretrain.RILSViT' and (bb.arch, bb.patch_size, bb.img_size) == (
        'b', 16, 1024)
    assert bb.window_size == 14 and tuple(bb.global_attn_indexes) == (2, 5, 8, 11)
    assert bb.use_rel_pos and bb.drop_path_rate == 0.1 and tuple(bb.out_indices) == (11, )
    assert bb.init_cfg.type == 'Pretrained' and bb.init_cfg.prefix == 'backbone.'
    assert coco.model.neck.type == 'mmpretrain.SimpleFPN' and coco.model.neck.num_outs == 5
    assert coco.model.rpn_head.num_convs == 2
    assert coco.model.roi_head.bbox_head.type == 'Shared4Conv1FCBBoxHead'
    assert coco.model.roi_head.mask_head.norm_cfg.type == 'mmpretrain.LN2d'
    ow = coco.optim_wrapper
    assert ow.constructor == 'mmpretrain.BackboneLayerDecayOptimWrapperConstructor'
    assert ow.paramwise_cfg.layer_decay_rate == 0.7
    assert ow.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1)
    assert coco.train_cfg.max_epochs == 25 and coco.train_dataloader.batch_size * 16 == 64
    lsj = {t.type: t for t in coco.train_dataloader.dataset.pipeline}
    assert lsj['RandomResize'].scale == (1024, 1024)
    assert lsj['RandomResize'].ratio_range == (0.1, 2.0)
    assert lsj['RandomCrop'].crop_size == (1024, 1024)

    for pct in (1, 2, 5, 10, 20, 50):
        low = Config.fromfile(osp.join(
            ROOT, DET, f'vitdet_mask_rcnn_rils_vitb16_coco_lowshot_{pct}pct_12e.py'))
        assert low.train_cfg.max_epochs == 12 and low.model == coco.model
        assert low.train_dataloader.dataset.ann_file == \
            f'annotations/instances_train2017_{pct}pct_seed0.json'

    lvis = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_lvis_25e.py'))
    assert lvis.train_dataloader.dataset.type == 'ClassBalancedDataset'
    assert lvis.train_dataloader.dataset.oversample_thr == 1e-3
    assert lvis.train_dataloader.dataset.dataset.type == 'LVISV1Dataset'
    assert lvis.model.roi_head.bbox_head.num_classes == 1203
    assert lvis.model.roi_head.bbox_head.loss_cls.type == 'SeesawLoss'
    assert lvis.model.backbone == coco.model.backbone and lvis.train_cfg.max_epochs == 25

    ade = Config.fromfile(osp.join(ROOT, SEG, SEG_CFG))
    bb = ade.model.backbone
    assert bb.type == 'mmpretrain.RILSViT' and bb.img_size == 512 and bb.use_rel_pos
    assert bb.get('window_size', 0) == 0  # global attention, as mmseg's MAE
    assert tuple(bb.out_indices) == (3, 5, 7, 11) and bb.drop_path_rate == 0.1
    assert ade.model.neck.type == 'Feature2Pyramid' and ade.model.neck.rescales == [4, 2, 1, 0.5]
    assert ade.model.decode_head.type == 'UPerHead'
    assert ade.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.65
    assert ade.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                               weight_decay=0.05)
    assert ade.train_cfg.max_iters == 160000 and ade.train_dataloader.batch_size * 8 == 16
    assert ade.crop_size == (512, 512)


def test_vitb_dense_backbone_of_the_coco_config_builds_with_the_paper_sizes():
    cfg = Config.fromfile(osp.join(ROOT, DET, 'vitdet_mask_rcnn_rils_vitb16_coco_25e.py'))
    bb = cfg.model.backbone.to_dict()
    bb.pop('init_cfg')
    vit = PRETRAIN_MODELS.build(bb)  # by its scoped type, mmpretrain.RILSViT
    assert vit.patch_resolution == (64, 64)
    windows = [blk.attn.window_size for blk in vit.layers]
    assert windows == [14, 14, 0, 14, 14, 0, 14, 14, 0, 14, 14, 0]
    # rel-pos tables: 2*14-1 rows in windowed blocks, 2*64-1 in global ones (64 = head dim)
    assert tuple(vit.layers[0].attn.rel_pos_h.shape) == (27, 64)
    assert tuple(vit.layers[2].attn.rel_pos_h.shape) == (127, 64)
    assert vit.layers[11].attn.out_drop.drop_prob == pytest.approx(0.1)
