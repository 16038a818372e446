"""Training-free open-vocabulary segmentation (ZeroShotSegmentor): the label and
metric path on constructed scores, the last-block variants against their
equations, sliding windows against whole-image passes, open_clip checkpoints,
a toy RILS segmenting the toy dense split above chance, and one benchmark
config through tools/test.py on data in its mmseg format."""
import csv
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.evaluation.dense_zero_shot import mean_std, toy_dense_split, toy_dense_zero_shot
from rils_mm.models.segmentors import ZeroShotSegmentor, dense_patch_tokens
from rils_mm.testing import generate_toy_corpus, tiny_rils_cfg
from rils_mm.testing.toy_corpus import TEMPLATES, get_classnames, render_semantic_mask
from rils_mm.testing.toy_corpus.writer import corpus_scene
from rils_mm.utils.model_convert import to_open_clip

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CFGS = osp.join(ROOT, 'configs', 'benchmarks', 'zero_shot_seg')
SETS = ('voc21', 'voc20', 'context60', 'context59', 'coco_object', 'coco_stuff164k',
        'cityscapes', 'ade20k')
TOY_SIZE = 64  # toy images and model input; patch 8 -> an 8x8 grid


def tiny_cfg(**kw):
    return tiny_rils_cfg(img_size=kw.pop('img_size', 32), patch_size=8, **kw)


def segmentor(model_cfg=None, **kw):
    torch.manual_seed(0)
    kw.setdefault('class_names', ['sky', ['red circle', 'red disc'], 'blue square'])
    kw.setdefault('templates', ['a photo of a {}.', 'a {}.'])
    seg = ZeroShotSegmentor(image_text_model=model_cfg or tiny_cfg(), **kw)
    seg.init_weights()
    with torch.no_grad():  # break the symmetry of the initialisation
        for p in seg.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return seg.eval()


# ------------------------------------------------------------------ labels and metric
def test_constructed_scores_give_the_labels_and_the_miou_computed_by_hand():
    """Scores -> labels (softmax over prompts, max over a class's names, threshold
    to background) -> mmseg's IoUMetric, against IoUs counted by hand."""
    from mmseg.evaluation import IoUMetric
    seg = segmentor(prob_threshold=0.5, background_index=0)
    assert seg.queries == ['sky', 'red circle', 'red disc', 'blue square']
    # the query each pixel prefers; -1: all queries tie (max probability 1/4 < 0.5)
    want_query = np.array([[0, 0, 1, 2], [0, 0, 2, 1], [3, 3, 3, -1], [3, 1, -1, 0]])
    scores = torch.zeros(1, 4, 4, 4)
    for (y, x), q in np.ndenumerate(want_query):
        if q >= 0:
            scores[0, q, y, x] = 1.0  # logit_scale 40 -> probability ~1
    out = seg.postprocess_result(scores)[0]
    pred = out.pred_sem_seg.data[0].numpy()
    query_class = [0, 1, 1, 2]
    expected = np.array([[0 if q < 0 else query_class[q] for q in row] for row in want_query])
    assert pred.tolist() == expected.tolist()
    probs = out.seg_logits.data
    assert probs.shape == (3, 4, 4)
    assert float(probs[1, 0, 2]) == pytest.approx(1.0, abs=1e-6)  # 'red circle' wins class 1
    assert float(probs[:, 2, 3].max()) == pytest.approx(0.25)  # a tie: 1/4 < 0.5

    gt = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [2, 2, 255, 0], [2, 2, 2, 255]])
    valid = gt != 255
    ious = []
    for c in range(3):
        inter = int(((pred == c) & (gt == c) & valid).sum())
        union = int((((pred == c) | (gt == c)) & valid).sum())
        ious.append(inter / union)
    assert ious == [4 / 6, 4 / 6, 3 / 5]  # counted on the grids above
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('sky', 'red circle', 'blue square'))
    metric.process({}, [dict(pred_sem_seg=dict(data=torch.from_numpy(pred)[None]),
                             gt_sem_seg=dict(data=torch.from_numpy(gt)[None]))])
    res = metric.compute_metrics(metric.results)
    assert res['mIoU'] == pytest.approx(round(100 * sum(ious) / 3, 2))


def test_area_filter_drops_a_class_below_its_share_of_the_foreground():
    seg = segmentor(area_threshold=0.2, background_index=0)
    scores = torch.zeros(4, 10, 10)
    scores[3] = 1.0  # 'blue square' everywhere ...
    scores[3, 0, :] = 0.0
    scores[1, 0, :] = 1.0  # ... but 'red circle' on one row: 10 of 100 foreground pixels
    pred = seg.labels(seg.class_probabilities(scores))
    assert set(pred.unique().tolist()) == {0, 2}  # class 1 removed, its row -> background
    assert (pred[0, 0] == 0).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='need background_index'):
        segmentor(prob_threshold=0.1)
    with pytest.raises(KeyError, match='last_block'):
        segmentor(last_block='sclip2')
    with pytest.raises(ValueError, match='class 1 has no name'):
        segmentor(class_names=['sky', ' , '])
    seg = segmentor()
    bad = {k: v for k, v in seg.state_dict().items() if not k.startswith('text_encoder.')}
    with pytest.raises(KeyError, match='no text tower'):
        seg.load_state_dict(bad, strict=False)


# ------------------------------------------------------------------ variants
def _ln(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def _reference_last_block(layer, x, attn_kind, residual, ffn):
    """The last block written out: LN, q/k/v with the q/v bias, per-head
    attention, output projection, optional residual and GELU MLP."""
    B, N, C = x.shape
    heads = layer.attn.num_heads
    y = _ln(x, layer.ln1)
    qkv_lin = layer.attn.qkv
    bias = torch.cat([qkv_lin.q_bias, torch.zeros_like(qkv_lin.q_bias), qkv_lin.v_bias])
    q, k, v = (y @ qkv_lin.weight.t() + bias).split(C, dim=-1)
    split = lambda t: t.reshape(B, N, heads, C // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    s = (C // heads)**-0.5
    sm = lambda a, b: torch.softmax(s * a @ b.transpose(-1, -2), -1)  # noqa: E731
    attn = {'qk': lambda: sm(q, k), 'qq': lambda: sm(q, q), 'qq+kk': lambda: sm(q, q) + sm(k, k),
            'identity': lambda: torch.eye(N).expand(B, heads, N, N)}[attn_kind]()
    o = (attn @ v).transpose(1, 2).reshape(B, N, C) @ layer.attn.proj.weight.t() \
        + layer.attn.proj.bias
    if residual:
        o = x + o
    if ffn:
        fc1, fc2 = layer.ffn.layers[0][0], layer.ffn.layers[1]
        o = o + F.linear(F.gelu(F.linear(_ln(o, layer.ln2), fc1.weight, fc1.bias)),
                         fc2.weight, fc2.bias)
    return o


@pytest.mark.parametrize('variant,kind,residual,ffn', [
    ('plain', 'qk', True, True), ('maskclip', 'identity', False, False),
    ('sclip', 'qq+kk', True, True), ('clearclip', 'qq', False, False),
    ('sclip-no-residual', 'qq+kk', False, True)])
def test_last_block_variants_equal_their_equations(variant, kind, residual, ffn):
    seg = segmentor()
    bb = seg.backbone
    images = torch.randn(2, 3, 32, 32)
    name = variant.split('-')[0]
    over = dict(residual=False) if variant.endswith('no-residual') else {}
    with torch.no_grad():
        got, hw = dense_patch_tokens(bb, images, name, **over)
        x = bb.patch_embed(images)[0]
        x = torch.cat([bb.cls_token.expand(2, -1, -1), x], 1) + bb.pos_embed
        for layer in bb.layers[:-1]:
            x = layer(x)
        want = _ln(_reference_last_block(bb.layers[-1], x, kind, residual, ffn), bb.ln1)[:, 1:]
    assert hw == (4, 4)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if variant != 'plain':  # the variant changes the features
        with torch.no_grad():
            assert (got - dense_patch_tokens(bb, images)[0]).abs().max() > 1e-3


def test_plain_dense_tokens_are_the_pretraining_intact_view():
    seg = segmentor()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got, _ = dense_patch_tokens(seg.backbone, images)
        torch.testing.assert_close(got, seg.backbone.forward_intact(images)[:, 1:])
        # Eq. 8 without the softmax: cosine of ||theta(f^k)|| and the prompt embeddings
        z = F.normalize(seg.head.image_projection(got), dim=-1)
        w = seg.text_embeddings()
        scores = seg.encode_decode(images, None)  # upsampled to 32 x 32 (bilinear)
        want = F.interpolate((z @ w.t()).transpose(1, 2).reshape(2, 4, 4, 4), size=(32, 32),
                             mode='bilinear', align_corners=False)
    torch.testing.assert_close(scores, want, rtol=1e-4, atol=1e-5)
    tokens = open_clip.tokenize([t.format('red disc') for t in seg.templates], context_length=16)
    with torch.no_grad():
        e = F.normalize(seg.head.text_projection(seg.text_encoder(tokens)), dim=-1)
    torch.testing.assert_close(w[2], F.normalize(e.mean(0), dim=0))  # prompt ensemble


# ------------------------------------------------------------------ sliding windows
def test_sliding_window_equals_whole_image_passes_where_they_must():
    seg = segmentor()
    images = torch.randn(1, 3, 32, 64)
    meta = [dict(ori_shape=(32, 64), img_shape=(32, 64), pad_shape=(32, 64))]
    with torch.no_grad():
        seg.test_cfg = ConfigDict(dict(mode='whole'))
        left = seg.inference(images[..., :32], [dict(meta[0])])
        right = seg.inference(images[..., 32:], [dict(meta[0])])
        # windows tiling the image: each window is a whole-image pass at img_size
        seg.test_cfg = ConfigDict(dict(mode='slide', crop_size=(32, 32), stride=(32, 32)))
        tiled = seg.inference(images, [dict(meta[0])])
        torch.testing.assert_close(tiled, torch.cat([left, right], -1))
        # overlapping windows (stride 16): the average of the windows covering a pixel
        seg.test_cfg = ConfigDict(dict(mode='slide', crop_size=(32, 32), stride=(32, 16)))
        mid = seg.inference(images[..., 16:48], [dict(meta[0])])
        slid = seg.inference(images, [dict(meta[0])])
        want = torch.cat([left[..., :16], (left[..., 16:] + mid[..., :16]) / 2,
                          (mid[..., 16:] + right[..., :16]) / 2, right[..., 16:]], -1)
        torch.testing.assert_close(slid, want)
        # a window the size of the image is the whole-image pass
        seg.test_cfg = ConfigDict(dict(mode='slide', crop_size=(32, 32), stride=(16, 16)))
        torch.testing.assert_close(seg.inference(images[..., :32], [dict(meta[0])]), left)


# ------------------------------------------------------------------ checkpoints
def test_open_clip_state_dict_loads_into_the_same_segmentor():
    seg = segmentor()
    ours = {k: v for k, v in seg.state_dict().items()}
    other = segmentor()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    info = other.load_state_dict(to_open_clip(ours), strict=False)
    assert not [k for k in info.missing_keys if k != 'backbone.patch_embed.projection.bias']
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        seg.text_embeddings()
        torch.testing.assert_close(other.encode_decode(images, None),
                                   seg.encode_decode(images, None), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ toy data, end to end
def _train_toy(cfg, corpus, steps, seed=0):
    """A few AdamW steps of the image-text model on the toy corpus's captions."""
    torch.manual_seed(seed)
    model = PRETRAIN_MODELS.build(cfg)
    model.init_weights()
    rows = list(csv.DictReader(open(corpus['train_csv'])))
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    images = torch.stack([
        (torch.from_numpy(np.asarray(Image.open(osp.join(corpus['root'], r['filepath']))
                                     .convert('RGB'))).permute(2, 0, 1).float() / 255 - mean)
        / std for r in rows])
    tokens = open_clip.tokenize([r['caption'] for r in rows], context_length=16)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(rows), (64, ), generator=gen)
        losses = model.forward_train(images[idx], tokens[idx])
        loss = sum(v for k, v in losses.items() if k.startswith('loss'))
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.head.clamp_logit_scale()
    return model.eval()


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A toy corpus and a tiny RILS trained on it for 250 steps (seconds)."""
    root = tmp_path_factory.mktemp('toy')
    corpus = generate_toy_corpus(str(root / 'corpus'), num_train=1024, num_val=48,
                                 image_size=TOY_SIZE, shard_size=1024)
    cfg = tiny_cfg(img_size=TOY_SIZE)
    model = _train_toy(cfg, corpus, steps=250)
    ckpt = str(root / 'rils_toy.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    return dict(corpus=corpus, cfg=cfg, model=model, ckpt=ckpt, root=root)


@pytest.mark.slow  # the toy fixture trains a model (~20 s)
def test_toy_dense_split_is_the_rendered_scenes(toy):
    split = toy_dense_split(toy['corpus']['root'], max_images=3)
    for index, (path, labels) in enumerate(split):
        sem = render_semantic_mask(corpus_scene(0, 'val', index)[0], TOY_SIZE)
        assert osp.isfile(path) and labels.shape == (TOY_SIZE, TOY_SIZE)
        assert ((labels == 255) == (sem == 0)).all() and (labels[sem > 0] == sem[sem > 0] - 1).all()


@pytest.mark.slow  # the toy fixture trains a model (~20 s)
def test_toy_rils_segments_the_toy_dense_split_above_chance(toy):
    """mIoU over the 16 object classes (background ignored) of the trained toy RILS,
    for every last-block variant, against the same network untrained."""
    trained = {v: toy_dense_zero_shot(toy['model'], toy['corpus']['root'], last_block=v)
               for v in ('plain', 'maskclip', 'sclip', 'clearclip')}
    torch.manual_seed(0)
    untrained = PRETRAIN_MODELS.build(toy['cfg'])
    untrained.init_weights()
    chance = toy_dense_zero_shot(untrained.eval(), toy['corpus']['root'])
    print('toy dense zero-shot mIoU', {k: v['mIoU'] for k, v in trained.items()},
          'untrained', chance['mIoU'])
    assert trained['plain']['mIoU'] > max(2 * chance['mIoU'], 100 / 16)
    assert trained['plain']['aAcc'] > 100 / 16 * 2
    for v in trained.values():
        assert 0 <= v['mIoU'] <= 100
    assert mean_std([1.0, 2.0, 3.0]) == '2.0 ± 1.0' and mean_std([None]) == '—'


def _write_voc(root, num=4):
    """The toy val scenes in Pascal VOC 2012's layout (JPEGImages, SegmentationClass
    palette-index PNGs, ImageSets/Segmentation/val.txt); toy class k -> label k + 1."""
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    from rils_mm.testing.toy_corpus import render_scene
    names = []
    for i in range(num):
        scene = corpus_scene(0, 'val', i)[0]
        name = f'2007_{i:06d}'
        render_scene(scene, TOY_SIZE).save(root / 'JPEGImages' / f'{name}.jpg', quality=95)
        sem = render_semantic_mask(scene, TOY_SIZE)
        sem[0, :] = 255  # VOC's "void" border label, ignored
        png = Image.fromarray(sem, 'P')
        png.putpalette([v for c in range(256) for v in (c, c, c)])
        png.save(root / 'SegmentationClass' / f'{name}.png')
        names.append(name)
    (root / 'ImageSets/Segmentation/val.txt').write_text('\n'.join(names) + '\n')


@pytest.mark.slow
def test_voc20_config_runs_through_tools_test_on_voc_format_data(toy, tmp_path):
    """configs/benchmarks/zero_shot_seg/voc20.py with the toy model and class names,
    run by tools/test.py on toy scenes written in VOC's format (mmseg's test loop,
    IoUMetric and SegLocalVisualizer unchanged)."""
    voc = tmp_path / 'VOC2012'
    _write_voc(voc)
    names = get_classnames() + ['unused a', 'unused b', 'unused c', 'unused d']
    child = tmp_path / 'voc20_toy.py'
    child.write_text('\n'.join([
        f"_base_ = [{osp.join(SEG_CFGS, 'voc20.py')!r}]",
        f"model = dict(image_text_model=dict(_delete_=True, **{toy['cfg']!r}),",
        f"             class_names={names!r}, templates={list(TEMPLATES)!r},",
        "             test_cfg=dict(crop_size=(64, 64), stride=(32, 32)))",
        "test_pipeline = [dict(type='LoadImageFromFile'),",
        "                 dict(type='Resize', scale=(2048, 96), keep_ratio=True),",
        "                 dict(type='LoadAnnotations'), dict(type='PackSegInputs')]",
        f"test_dataloader = dict(num_workers=0, dataset=dict(data_root={str(voc)!r},",
        "                        pipeline=test_pipeline))", '']))
    out = tmp_path / 'metrics.json'
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'test.py'), str(child), toy['ckpt'],
                    '--work-dir', str(tmp_path / 'work'), '--out', str(out)], check=True,
                   cwd=ROOT, env=dict(__import__('os').environ, PYTHONPATH=ROOT))
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {'aAcc', 'mIoU', 'mAcc'}
    assert metrics['mIoU'] > 100 / 16  # 96 px, 64 px windows with overlap: still above chance

    # the report tool: the eight-set section, sets without data left out, SCLIP's row beside
    model_cfg = tmp_path / 'toy_model.py'
    model_cfg.write_text(f"model = {toy['cfg']!r}\n")
    report = tmp_path / 'report.md'
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'eval_report.py'), str(model_cfg),
                    toy['ckpt'], '--protocols', 'zero_shot_seg', '--skip-missing',
                    '--data-root', f'voc20={voc}', '--work-dir', str(tmp_path / 'report'),
                    '--out', str(report)], check=True, cwd=ROOT,
                   env=dict(__import__('os').environ, PYTHONPATH=ROOT))
    rows = [r for r in report.read_text().splitlines() if r.startswith('| ')]
    assert rows[0].split(' | ')[1:9] == ['VOC21', 'Context60', 'COCO-Object', 'VOC20',
                                         'Context59', 'COCO-Stuff', 'Cityscapes', 'ADE20K']
    ours = rows[2].split(' | ')
    assert ours[1:4] == ['–'] * 3 and float(ours[4]) >= 0  # only VOC20 has data here
    assert rows[3].split(' | ')[1] == '59.63' and rows[3].split(' | ')[4] == '81.54'


def test_the_eight_benchmark_configs_say_the_protocol():
    expect = {'voc21': ('PascalVOCDataset', 21, 0), 'voc20': ('PascalVOC20Dataset', 20, None),
              'context60': ('PascalContextDataset', 60, 0),
              'context59': ('PascalContextDataset59', 59, None),
              'coco_object': ('COCOObjectDataset', 81, 0),
              'coco_stuff164k': ('COCOStuffDataset', 171, None),
              'cityscapes': ('CityscapesDataset', 19, None),
              'ade20k': ('ADE20KDataset', 150, None)}
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import rils_mm.models.segmentors  # noqa: F401
    init_default_scope('mmseg')
    for name in SETS:
        cfg = Config.fromfile(osp.join(SEG_CFGS, f'{name}.py'))
        kind, num, bg = expect[name]
        ds = cfg.test_dataloader.dataset
        assert ds.type == kind and len(cfg.model.class_names) == num, name
        assert len(DATASETS.get(kind).METAINFO['classes']) == num, name
        assert cfg.model.background_index == bg, name
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(224, 224), stride=(112, 112))
        assert cfg.model.templates == 'imagenet1k' and cfg.model.last_block == 'plain'
        resize = [t for t in ds.pipeline if t.type == 'Resize'][0]
        side = {'cityscapes': 560, 'coco_stuff164k': 448}.get(name, 336)
        assert resize.scale == (2048, side) and resize.keep_ratio
        assert cfg.model.image_text_model.backbone.patch_size == 16
        assert cfg.test_evaluator.type == 'IoUMetric'


def test_coco_object_labels_are_groupvit_conversion():
    from rils_mm.datasets.seg_benchmarks import COCOObjectDataset, coco_object_labels
    classes = COCOObjectDataset.METAINFO['classes']
    raw = np.array([[0, 11, 12, 89], [90, 91, 181, 255]], np.uint8)  # COCO-Stuff ids - 1
    got = coco_object_labels(raw)
    assert got.tolist() == [[1, 0, 12, 80], [0, 0, 0, 0]]
    assert classes[1] == 'person' and classes[12] == 'stop sign' and classes[80] == 'toothbrush'


@pytest.mark.slow  # the toy fixture trains a model (~20 s)
def test_word_segmentation_picture_of_two_checkpoints(toy, tmp_path):
    """tools/analysis/visualize_zero_shot_seg.py: one panel per checkpoint, every
    pixel's best word; the probabilities are the segmentor's at the image size."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'viz_seg', osp.join(ROOT, 'tools', 'analysis', 'visualize_zero_shot_seg.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = tmp_path / 'toy_model.py'
    cfg.write_text(f"model = {toy['cfg']!r}\n")
    image = toy_dense_split(toy['corpus']['root'], max_images=1)[0][0]
    words = ['red circle', 'blue square', 'green cross']
    out = tmp_path / 'seg.png'
    results = tool.main([image, '--words', *words, '--configs', str(cfg), str(cfg),
                         '--checkpoints', toy['ckpt'], toy['ckpt'], '--templates',
                         toy['corpus']['templates'], '--threshold', '0.5', '--panel-px', '100',
                         '--out', str(out)])
    assert [r[1].shape for r in results] == [(3, TOY_SIZE, TOY_SIZE)] * 2
    torch.testing.assert_close(results[0][1].sum(0) > 0, torch.ones(TOY_SIZE, TOY_SIZE) > 0)
    with Image.open(out) as im:  # image + 2 panels; one legend row of 3 words
        assert im.size == (3 * 100, 100 + 74 + 14)
