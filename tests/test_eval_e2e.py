"""tools/test.py --benchmark, tools/low_shot.py and clip-benchmark's own zero-shot
evaluation, end to end on the toy corpus with a toy checkpoint; each figure is checked
against the same quantity computed by hand from the model's encoders."""
import json
import os
import os.path as osp
import runpy
import shutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.registry import MODELS
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.testing import generate_toy_corpus

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOY_CONFIG = osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py')
SIZE, CONTEXT = 32, 16

MODEL_CONFIG = f"""
_base_ = [{TOY_CONFIG!r}]
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=4,
                            feedforward_channels=128), img_size={SIZE}, patch_size=8),
    neck=dict(num_patches={(SIZE // 8)**2}, embed_dim=64, decoder_num_heads=4),
    text_encoder=dict(context_length={CONTEXT}, width=64, heads=4, layers=2),
    head=dict(vision_dims=64, text_dims=64, embed_dims=32))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
"""


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """Toy corpus, a tiny model config, a checkpoint of a randomly initialised model
    (so the figures are not degenerate), and the held-out split as an ImageFolder."""
    root = tmp_path_factory.mktemp('eval')
    corpus = generate_toy_corpus(str(root / 'toy'), num_train=24, num_val=48,
                                 image_size=SIZE, seed=5, shard_size=24)
    cfg_path = root / 'tiny.py'
    cfg_path.write_text(MODEL_CONFIG)
    cfg = Config.fromfile(str(cfg_path))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # a larger temperature range: scores far from ties
        model.head.text_projection.weight.mul_(3)
    ckpt = root / 'toy.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)

    folder = root / 'toy_folder'
    classes = corpus['classes']
    rows = open(corpus['val_csv']).read().split()[1:]
    for row in rows:
        path, label = row.split(',')
        dst = folder / f'{int(label):02d}'
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(osp.join(corpus['root'], path), dst / osp.basename(path))
    bench = root / 'toy_zero_shot.py'
    bench.write_text(
        f"_base_ = [{osp.join(ROOT, 'configs/benchmarks/_base_/zero_shot.py')!r}]\n"
        f"test_dataloader = dict(batch_size=16, num_workers=0, dataset=dict(\n"
        f"    key='toy', data_root={str(folder)!r}, data_format='imagefolder',\n"
        f"    classnames={classes!r}, templates_file=None,\n"
        f"    templates={open(corpus['templates']).read().split(chr(10))[:4]!r}))\n")
    model.eval()
    return dict(root=root, corpus=corpus, cfg=cfg, cfg_path=str(cfg_path), model=model,
                ckpt=str(ckpt), folder=str(folder), bench=str(bench), classes=classes)


def _preprocess(model, path):
    """PIL decode, short-side bicubic resize (pillow), centre crop, CLIP normalisation."""
    img = Image.open(path).convert('RGB')
    w, h = img.size
    scale = SIZE / min(w, h)
    img = img.resize((int(w * scale + 0.5), int(h * scale + 0.5)), Image.BICUBIC)
    w, h = img.size
    left, top = (w - SIZE) // 2, (h - SIZE) // 2
    img = img.crop((left, top, left + SIZE, top + SIZE))
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()
    mean = torch.tensor(model.data_preprocessor.mean).view(3, 1, 1)
    std = torch.tensor(model.data_preprocessor.std).view(3, 1, 1)
    return (x - mean) / std


def _run_test_tool(*args):
    argv = sys.argv
    sys.argv = ['tools/test.py', *args]
    try:
        return runpy.run_path(osp.join(ROOT, 'tools', 'test.py'), run_name='not_main')['main']()
    finally:
        sys.argv = argv


@pytest.mark.slow
def test_zero_shot_benchmark_through_tools_test(toy):
    import open_clip
    bench = Config.fromfile(toy['bench'])
    templates = bench.test_dataloader.dataset.templates
    out = toy['root'] / 'zs.json'
    metrics = _run_test_tool(toy['cfg_path'], toy['ckpt'], '--benchmark', toy['bench'],
                             '--work-dir', str(toy['root'] / 'wd_zs'), '--out', str(out))
    assert json.load(open(out)) == pytest.approx(metrics)

    # by hand: class embeddings = normalised mean of normalised prompt embeddings
    model = toy['model']
    with torch.no_grad():
        weights = []
        for name in toy['classes']:
            tokens = open_clip.tokenize([t.format(name) for t in templates], CONTEXT)
            weights.append(F.normalize(F.normalize(model.encode_text(tokens), dim=-1).mean(0),
                                       dim=0))
        weights = torch.stack(weights)
        paths, labels = [], []
        for label in sorted(os.listdir(toy['folder'])):
            for f in sorted(os.listdir(osp.join(toy['folder'], label))):
                paths.append(osp.join(toy['folder'], label, f))
                labels.append(int(label))
        images = torch.stack([_preprocess(model, p) for p in paths])
        pred = (model.encode_image(images) @ weights.t()).argmax(1)
    labels = torch.tensor(labels)
    top1 = (pred == labels).float().mean().item() * 100
    per_class = [(pred[labels == c] == c).float().mean().item() for c in labels.unique()]
    assert metrics['zero-shot/top1'] == pytest.approx(top1, abs=1e-6)
    assert metrics['zero-shot/mean_per_class'] == pytest.approx(np.mean(per_class) * 100)
    assert metrics['zero-shot/score'] == metrics['zero-shot/top1']
    assert 0 < top1 < 100  # a random model: neither degenerate extreme
    toy['zero_shot_metrics'] = metrics


@pytest.mark.slow
def test_clip_benchmark_evaluation_matches_tools_test(toy):
    """clip-benchmark's own zero-shot code on our checkpoint gives tools/test.py's numbers
    (and runs under numpy 2, whose float() refuses clip-benchmark 1.6.2's 1-d array)."""
    from clip_benchmark.metrics import zeroshot_classification as zc
    from torchvision.datasets import ImageFolder

    from rils_mm.evaluation.clip_benchmark_adapter import (
        load_for_clip_benchmark,
        patch_clip_benchmark_for_numpy2,
    )
    if 'zero_shot_metrics' not in toy:
        test_zero_shot_benchmark_through_tools_test(toy)
    ours = toy['zero_shot_metrics']
    bench = Config.fromfile(toy['bench'])
    templates = [t.replace('{}', '{c}') for t in bench.test_dataloader.dataset.templates]

    model, transform, tokenizer = load_for_clip_benchmark(toy['cfg_path'], toy['ckpt'])
    dataset = ImageFolder(toy['folder'], transform=transform)
    dataset.classes = toy['classes']
    loader = torch.utils.data.DataLoader(dataset, batch_size=16)
    if int(np.__version__.split('.')[0]) >= 2:
        with pytest.raises(TypeError):
            zc.accuracy(torch.eye(2), torch.arange(2))  # the bug this patch handles
    patch_clip_benchmark_for_numpy2()
    res = zc.evaluate(model, loader, tokenizer, toy['classes'], templates, 'cpu', amp=False)
    assert res['acc1'] * 100 == pytest.approx(ours['zero-shot/top1'], abs=1e-6)
    assert res['acc5'] * 100 == pytest.approx(ours['zero-shot/top5'], abs=1e-6)
    assert res['mean_per_class_recall'] * 100 == pytest.approx(
        ours['zero-shot/mean_per_class'], abs=1e-6)


@pytest.mark.slow
def test_retrieval_benchmark_through_tools_test(toy):
    corpus = toy['corpus']
    rows = [json.loads(line) for line in open(corpus['train_jsonl'])][:12]
    variants = ['{}', 'a photo: {}', 'picture of {}', 'an image showing {}', 'look, {}']
    images = [dict(filepath='train/images', filename=osp.basename(r['filepath']), split='test',
                   sentences=[dict(raw=v.format(r['caption'])) for v in variants])
              for r in rows]
    ann = toy['root'] / 'toy_karpathy.json'
    ann.write_text(json.dumps(dict(images=images, dataset='toy')))
    bench = toy['root'] / 'toy_retrieval.py'
    bench.write_text(
        f"_base_ = [{osp.join(ROOT, 'configs/benchmarks/retrieval/coco_karpathy_5k.py')!r}]\n"
        "test_dataloader = dict(batch_size=5, num_workers=0)\n")
    metrics = _run_test_tool(toy['cfg_path'], toy['ckpt'], '--benchmark', str(bench),
                             '--data-root', corpus['root'], '--cfg-options',
                             f'test_dataloader.dataset.ann_file={ann}',
                             '--work-dir', str(toy['root'] / 'wd_ret'))

    import open_clip
    model = toy['model']
    with torch.no_grad():
        zi = model.encode_image(torch.stack([
            _preprocess(model, osp.join(corpus['root'], 'train/images', im['filename']))
            for im in images]))
        caps = [s['raw'] for im in images for s in im['sentences']]
        zt = model.encode_text(open_clip.tokenize(caps, CONTEXT))
    sim = (zi @ zt.t()).numpy()
    owner = np.repeat(np.arange(len(images)), 5)
    for k in (1, 5, 10):
        i2t = np.mean([owner[np.argsort(-sim[i])[:k]].tolist().count(i) > 0
                       for i in range(len(images))]) * 100
        t2i = np.mean([owner[j] in np.argsort(-sim[:, j])[:k] for j in range(len(caps))]) * 100
        assert metrics[f'retrieval/i2t_R@{k}'] == pytest.approx(i2t)
        assert metrics[f'retrieval/t2i_R@{k}'] == pytest.approx(t2i)
    assert 0 < metrics['retrieval/t2i_R@1'] < 100


@pytest.mark.slow
def test_low_shot_tool(toy):
    from sklearn.linear_model import LogisticRegression

    from rils_mm.evaluation import sample_k_per_class
    bench = toy['root'] / 'toy_lowshot.py'
    bench.write_text(
        f"_base_ = [{osp.join(ROOT, 'configs/benchmarks/low_shot/imagenet_lowshot.py')!r}]\n"
        "shots = (1, 2)\nseeds = (0, 1, 2)\nbatch_size = 16\n"
        f"train_dataset = dict(key='toy', classnames={toy['classes']!r}, templates=['{{}}'],\n"
        "                     folder_labels='sorted')\n"
        "test_dataset = train_dataset\n")
    argv = sys.argv
    sys.argv = ['tools/low_shot.py', toy['cfg_path'], toy['ckpt'], '--benchmark', str(bench),
                '--train-root', toy['folder'], '--test-root', toy['folder']]
    try:
        res = runpy.run_path(osp.join(ROOT, 'tools', 'low_shot.py'), run_name='x')['main']()
    finally:
        sys.argv = argv
    assert set(res) == {1, 2}

    model = toy['model']
    paths, labels = [], []
    for label in sorted(os.listdir(toy['folder'])):
        for f in sorted(os.listdir(osp.join(toy['folder'], label))):
            paths.append(osp.join(toy['folder'], label, f))
            labels.append(int(label))
    labels = np.array(labels)
    with torch.no_grad():
        x = torch.stack([_preprocess(model, p) for p in paths])
        feats = model.backbone.forward_intact(x)[:, 1:].mean(1).numpy()
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for k in (1, 2):
        accs = []
        for seed in (0, 1, 2):
            idx = sample_k_per_class(labels, k, seed)
            clf = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8, random_state=seed)
            clf.fit(feats[idx], labels[idx])
            accs.append((clf.predict(feats) == labels).mean() * 100)
        assert res[k]['accs'] == pytest.approx(accs, abs=1e-6)
        assert res[k]['mean'] == pytest.approx(np.mean(accs))
        assert res[k]['std'] == pytest.approx(np.std(accs))


@pytest.mark.slow
def test_report_tool_writes_the_table_beside_the_paper(toy):
    """One command: Table 6 protocol on the data that exists (here the toy folder laid
    out like NWPU-RESISC45), a Markdown row beside the paper's RILS row, average row."""
    metrics = _run_test_tool(toy['cfg_path'], toy['ckpt'], '--benchmark',
                             osp.join(ROOT, 'configs/benchmarks/zero_shot/resisc45.py'),
                             '--data-root', toy['folder'],
                             '--work-dir', str(toy['root'] / 'wd_resisc'))
    out = toy['root'] / 'report.md'
    mod = runpy.run_path(osp.join(ROOT, 'tools', 'eval_report.py'), run_name='x')
    report = mod['run'](mod['parse_args']([
        toy['cfg_path'], toy['ckpt'], '--protocols', 'table6', 'table4', '--skip-missing',
        '--data-root', f'resisc45={toy["folder"]}', '--work-dir', str(toy['root'] / 'wd_rep'),
        '--out', str(out)]))
    assert out.read_text() == report
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith('|') and '| food101 |' in line)
    cols = [c.strip() for c in header.strip('|').split('|')]
    ours = next(line for line in lines if line.startswith('| this checkpoint'))
    paper_row = next(line for line in lines if line.startswith('| RILS (paper)'))
    ours = [c.strip() for c in ours.strip('|').split('|')]
    paper_row = [c.strip() for c in paper_row.strip('|').split('|')]
    value = f"{metrics['zero-shot/score']:.1f}"
    assert ours[cols.index('resisc45')] == value
    assert paper_row[cols.index('resisc45')] == '40.2'
    # the other 20 sets have no data here: shown as '–' and left out of both averages
    assert ours.count('–') == 20
    assert ours[cols.index('Average')] == value
    assert paper_row[cols.index('Average')] == '40.2'
    assert 'Low-shot' not in report  # no ImageNet train folder: skipped


def test_clip_benchmark_cli_model_type(toy):
    """``--model_type rils_mm`` (config as --model, checkpoint as --pretrained) in
    clip-benchmark's own loader table."""
    import clip_benchmark.models as cbm

    from rils_mm.evaluation.clip_benchmark_adapter import register_with_clip_benchmark
    register_with_clip_benchmark()
    assert 'rils_mm' in cbm.MODEL_TYPES
    model, transform, tokenizer = cbm.load_clip('rils_mm', toy['cfg_path'], toy['ckpt'],
                                                None, 'cpu')
    img = Image.open(next(osp.join(r, f) for r, _, fs in os.walk(toy['folder']) for f in fs))
    x = transform(img)
    assert x.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(x, _preprocess(toy['model'], img.filename))
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x[None]), toy['model'].encode_image(x[None]))
        tokens = tokenizer(['a red circle.'])
        assert tokens.shape == (1, CONTEXT)
        torch.testing.assert_close(model.encode_text(tokens), toy['model'].encode_text(tokens))


@pytest.mark.slow
def test_ood_imagenet_r_through_tools_test(toy, tmp_path):
    """Table 8's ImageNet-R protocol: WordNet-id folders, scored over the 200-class subset.
    Images are filed so that some are right and some wrong under the model's own
    prediction, so the expected top-1 is neither 0 nor 100."""
    import open_clip

    from rils_mm.evaluation import imagenet_subset_wnids, imagenet_wnids, load_classnames
    sub = imagenet_subset_wnids('imagenet-r')
    names = load_classnames('imagenet1k')
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    classes = [names[index[w]] for w in sub]
    model = toy['model']
    src = sorted(osp.join(r, f) for r, _, fs in os.walk(toy['folder']) for f in fs)[:6]
    with torch.no_grad():
        w = F.normalize(model.encode_text(open_clip.tokenize(
            [f'a photo of a {c}.' for c in classes], CONTEXT)), dim=-1)
        pred = (model.encode_image(torch.stack([_preprocess(model, f) for f in src]))
                @ w.t()).argmax(1).tolist()
    # images 0-2 in the folder of their predicted class, 3-5 in another class's folder
    labels = pred[:3] + [(p + 1) % 200 for p in pred[3:]]
    folder = tmp_path / 'imagenet-r'
    for i, (f, label) in enumerate(zip(src, labels)):
        (folder / sub[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, folder / sub[label] / f'{i}.jpg')
    bench = tmp_path / 'ood_r.py'
    bench.write_text(
        f"_base_ = [{osp.join(ROOT, 'configs/benchmarks/ood/imagenet_r.py')!r}]\n"
        "test_dataloader = dict(batch_size=4, num_workers=0,\n"
        "                       dataset=dict(templates=['a photo of a {}.']))\n")
    metrics = _run_test_tool(toy['cfg_path'], toy['ckpt'], '--benchmark', str(bench),
                             '--data-root', str(folder), '--work-dir', str(tmp_path / 'wd'))
    assert metrics['zero-shot/top1'] == pytest.approx(50.0)


@pytest.mark.slow
def test_clip_benchmark_cli_on_its_own_shards(toy, tmp_path):
    """clip-benchmark's command line, unchanged, on shards written by its own exporter:
    the same top-1 as tools/test.py on the same images."""
    from clip_benchmark.webdataset_builder import convert_dataset, path_to_bytes
    bench = Config.fromfile(toy['bench'])
    templates = [t.replace('{}', '{c}') for t in bench.test_dataloader.dataset.templates]

    class Split(list):
        classes = toy['classes']

    split = Split()
    for label in sorted(os.listdir(toy['folder'])):
        for f in sorted(os.listdir(osp.join(toy['folder'], label))):
            split.append((osp.join(toy['folder'], label, f), int(label)))
    split.templates = templates
    wds = str(tmp_path / 'wds_toy')
    convert_dataset(split, 'test', wds, transform=path_to_bytes, max_count=20, verbose=False)

    out = tmp_path / 'cb.json'
    main = runpy.run_path(osp.join(ROOT, 'tools', 'clip_benchmark_eval.py'), run_name='x')['main']
    main(['eval', '--model_type', 'rils_mm', '--model', toy['cfg_path'], '--pretrained',
          toy['ckpt'], '--dataset', 'wds/toy', '--dataset_root', wds, '--task',
          'zeroshot_classification', '--no_amp', '--num_workers', '0', '--batch_size', '16',
          '--output', str(out), '--quiet'])
    cb = json.load(open(out))['metrics']
    ours = _run_test_tool(toy['cfg_path'], toy['ckpt'], '--benchmark', toy['bench'],
                          '--work-dir', str(tmp_path / 'wd'))
    assert cb['acc1'] * 100 == pytest.approx(ours['zero-shot/top1'], abs=1e-6)
    assert cb['mean_per_class_recall'] * 100 == pytest.approx(ours['zero-shot/mean_per_class'],
                                                             abs=1e-6)
