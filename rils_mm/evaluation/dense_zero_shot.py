"""Dense zero-shot segmentation on the toy corpus's held-out split, and the
seed aggregation of ``tools/compare_methods.py``.

The toy validation images (``val.csv``) are re-rendered as semantic maps from
their scenes (``meta.json`` gives seed and size): every pixel is background
or one ``'<colour> <shape>'`` class. :func:`toy_dense_zero_shot` segments each
image with :class:`~rils_mm.models.segmentors.ZeroShotSegmentor` (the class
names and the corpus's prompt templates, no training on masks) and scores it
with mmseg's ``IoUMetric`` over the object classes, background ignored (the
VOC20 / Context59 setting).
"""
import csv
import json
import os.path as osp
import statistics
from typing import Dict, List, Optional

import numpy as np
import torch

__all__ = ['toy_dense_split', 'toy_dense_zero_shot', 'mean_std', 'seed_table', 'run_seeds']


def toy_dense_split(data_root: str, max_images: Optional[int] = None):
    """``[(image path, (H, W) uint8 labels)]`` of the toy held-out split;
    labels are ``k`` for class ``k`` and 255 for the background."""
    from rils_mm.testing.toy_corpus import corpus_scene, render_semantic_mask
    meta_path = osp.join(data_root, 'meta.json')
    if not osp.isfile(meta_path):
        raise FileNotFoundError(f'{meta_path}: no toy corpus meta.json (run '
                                'tools/make_toy_corpus.py)')
    with open(meta_path) as f:
        meta = json.load(f)
    with open(osp.join(data_root, 'val.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    size = int(meta['args']['image_size'])
    out = []
    for index, row in enumerate(rows[:max_images]):
        sem = render_semantic_mask(corpus_scene(int(meta['seed']), 'val', index)[0], size)
        out.append((osp.join(data_root, row['filepath']),
                    np.where(sem == 0, 255, sem.astype(np.int64) - 1).astype(np.uint8)))
    return out


@torch.no_grad()
def toy_dense_zero_shot(model, data_root: str, max_images: Optional[int] = None,
                        last_block: str = 'plain') -> Dict[str, float]:
    """mIoU / mAcc / aAcc (%) of the zero-shot segmentor built on ``model``
    (an image-text pre-trainer of this project) on the toy held-out split."""
    import mmcv
    from mmseg.evaluation import IoUMetric

    from rils_mm.models.segmentors import ZeroShotSegmentor
    from rils_mm.testing.toy_corpus import get_classnames
    classes = get_classnames()
    with open(osp.join(data_root, 'templates.txt')) as f:
        templates = [t.strip() for t in f if t.strip()]
    seg = ZeroShotSegmentor(image_text_model=model, class_names=classes, templates=templates,
                            last_block=last_block, test_cfg=dict(mode='whole'))
    device = next(model.parameters()).device
    seg = seg.to(device).eval()
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=classes)
    for path, labels in toy_dense_split(data_root, max_images):
        image = torch.from_numpy(mmcv.imread(path)).permute(2, 0, 1)  # BGR, as mmseg loads
        inputs = seg.data_preprocessor(dict(inputs=[image]), False)['inputs']
        pred = seg.predict(inputs)[0].pred_sem_seg.data
        metric.process({}, [dict(pred_sem_seg=dict(data=pred.cpu()),
                                 gt_sem_seg=dict(data=torch.from_numpy(labels)[None]))])
    return {k: float(v) for k, v in metric.compute_metrics(metric.results).items()}


def mean_std(values: List[Optional[float]], spec: str = '.1f') -> str:
    """``'mean ± std'`` (sample std over seeds), ``'—'`` when there is none."""
    values = [v for v in values if v is not None]
    if not values:
        return '—'
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{format(statistics.mean(values), spec)} ± {format(std, spec)}'


def seed_table(runs: Dict[int, List[dict]], command: str, machine: str) -> str:
    """One Markdown table over seeds: ``runs[seed]`` is the list of per-config
    result dicts ``tools/compare_methods.py`` writes (same configs, same order)."""
    seeds = sorted(runs)
    first = runs[seeds[0]]
    cols = [('zero-shot top-1 (%)', 'zero_shot_top1'),
            ('linear-probe top-1 (%)', 'linear_probe_top1'),
            ('dense zero-shot mIoU (%)', 'dense_zero_shot_miou')]
    lines = ['| config | method | ' + ' | '.join(c for c, _ in cols) + ' | step time (ms) |',
             '|---|---|' + '---:|' * (len(cols) + 1)]
    for i, r in enumerate(first):
        cells = [mean_std([runs[s][i].get(key) for s in seeds]) for _, key in cols]
        step = mean_std([runs[s][i]['step_ms'] for s in seeds], '.0f')
        lines.append(f"| `{r['config']}` | {r['method']} | " + ' | '.join(cells) +
                     f' | {step} |')
    st = first[0]['settings']
    lines += ['', f"Mean ± sample std over seeds {', '.join(map(str, seeds))}; "
              f"{st['iters']} steps of batch {st['batch_size']} per method and seed. Dense "
              'zero-shot: training-free segmentation of the held-out toy images by the class '
              'names (ZeroShotSegmentor, plain last block), mIoU over the 16 object classes '
              'with the background ignored; "—": no text tower.', '',
              f'Command: `{command}`', '', f'Machine: {machine}.']
    return '\n'.join(lines) + '\n'


def run_seeds(main, args, argv, machine: str) -> str:
    """``tools/compare_methods.py --seeds S1 S2 ...``: the one-seed comparison
    (``main``) once per seed into ``WORK_DIR/seed<S>/``, then :func:`seed_table`
    of their results written to ``--out`` (default ``WORK_DIR/table.md``)."""
    import os
    import shlex
    import sys
    runs = {}
    for seed in args.seeds:
        work = osp.join(args.work_dir, f'seed{seed}')
        child = list(args.configs) + [
            '--data-root', args.data_root, '--iters', str(args.iters), '--batch-size',
            str(args.batch_size), '--probe-c', str(args.probe_c), '--seed', str(seed),
            '--work-dir', work] + (['--reuse'] if args.reuse else [])
        main(child)
        runs[seed] = []
        for path in args.configs:
            name = osp.splitext(osp.basename(path))[0]
            with open(osp.join(work, f'{name}.json')) as f:
                runs[seed].append(json.load(f))
    command = 'python tools/compare_methods.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    table = seed_table(runs, command, machine)
    out = args.out or osp.join(args.work_dir, 'table.md')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        f.write(table)
    print(table)
    return table
