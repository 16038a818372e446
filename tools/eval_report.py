"""Run chosen downstream protocols on one checkpoint and write a Markdown report
beside the paper's numbers (RILS, CVPR 2023, Tables 4, 6, 7, 8).

    python tools/eval_report.py MODEL_CONFIG CHECKPOINT \
        --protocols table6 table8 retrieval/coco_karpathy_5k \
        --data-root cifar10=/data/cifar10 --out report.md

Protocols: ``table6`` (the 21 zero-shot sets), ``table7`` (COCO + Flickr30K
retrieval), ``table8`` (the 5 OOD sets), ``table4`` (low-shot ImageNet),
``zero_shot_seg`` (the 8 training-free segmentation sets, mIoU beside SCLIP's), or any
benchmark config path / name under configs/benchmarks/ (``zero_shot/cifar10``).
``--data-root NAME=DIR`` points one benchmark (by file stem; ``imagenet_train``,
``imagenet_val`` for table4) at its data; ``--skip-missing`` leaves out the
benchmarks whose data folder does not exist (shown as "–", not averaged).
"""
import argparse
import json
import os
import os.path as osp
import time

from project_env import setup_tool

setup_tool(__name__)

from mmengine.config import Config  # noqa: E402

import rils_mm  # noqa: E402,F401
from rils_mm.evaluation import paper_results as paper  # noqa: E402
from rils_mm.evaluation.benchmark_runner import run_benchmark  # noqa: E402
from rils_mm.evaluation.low_shot import format_mean_std, run_low_shot  # noqa: E402
from rils_mm.evaluation.zero_shot_seg import (  # noqa: E402
    SCLIP_VITB16_MIOU,
    ZERO_SHOT_SEG_SETS,
    run_zero_shot_seg,
)

BENCH_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                     'configs', 'benchmarks')
TABLE6_FILES = {
    'food101': 'food101', 'cifar10': 'cifar10', 'cifar100': 'cifar100',
    'cub200': 'cub200', 'sun397': 'sun397', 'cars': 'cars',
    'aircraft': 'aircraft', 'dtd': 'dtd', 'pets': 'pets',
    'caltech101': 'caltech101', 'flowers': 'flowers', 'mnist': 'mnist',
    'fer2013': 'fer2013', 'stl10': 'stl10', 'eurosat': 'eurosat',
    'resisc45': 'resisc45', 'gtsrb': 'gtsrb', 'country211': 'country211',
    'clevr': 'clevr', 'sst2': 'sst2', 'imagenet': 'imagenet'
}
TABLE8_FILES = {
    'imagenet-a': 'imagenet_a', 'imagenet-r': 'imagenet_r',
    'imagenet-sketch': 'imagenet_sketch', 'imagenetv2': 'imagenetv2',
    'objectnet': 'objectnet'
}
TABLE7_FILES = {
    'coco': 'coco_karpathy_5k', 'flickr30k': 'flickr30k_karpathy_1k'
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='the pretraining config of the checkpoint')
    p.add_argument('checkpoint')
    p.add_argument('--protocols', nargs='+', default=['table6'],
                   help='table4 table6 table7 table8 or benchmark configs')
    p.add_argument('--data-root', nargs='*', default=[],
                   metavar='NAME=DIR', help='data folder of a benchmark')
    p.add_argument('--work-dir', default='work_dirs/eval_report')
    p.add_argument('--out', default=None, help='Markdown file to write')
    p.add_argument('--json', default=None, help='also dump raw metrics')
    p.add_argument('--skip-missing', action='store_true',
                   help='leave out (as "–") benchmarks whose data folder is missing')
    p.add_argument('--paper-row', default='RILS',
                   help='paper method to print beside (RILS, CLIP, ...)')
    return p.parse_args(argv)


def _bench_path(name: str) -> str:
    if osp.isfile(name):
        return name
    path = osp.join(BENCH_DIR, name if name.endswith('.py') else name + '.py')
    if not osp.isfile(path):
        raise FileNotFoundError(f'no benchmark config {name!r} ({path})')
    return path


def _fmt(v, digits=1):
    return '–' if v is None else f'{v:.{digits}f}'


def _table(title, columns, ours, theirs, paper_row, average=True, digits=1):
    header = ['', *columns] + (['Average'] if average else [])
    rows = [header, ['---'] * len(header)]
    for label, vals in (('this checkpoint', ours),
                        (f'{paper_row} (paper)', theirs)):
        cells = [label] + [_fmt(v, digits) for v in vals]
        if average:
            got = [v for v, o in zip(vals, ours) if v is not None
                   and o is not None]
            cells.append(_fmt(sum(got) / len(got), digits) if got else '–')
        rows.append(cells)
    lines = [f'### {title}', ''] + ['| ' + ' | '.join(r) + ' |' for r in rows]
    if average:
        lines += ['', 'Average: over the columns this checkpoint was '
                  'evaluated on (both rows over the same columns).']
    return '\n'.join(lines) + '\n'


def run(args) -> str:
    model_cfg = Config.fromfile(args.config)
    roots = dict(kv.split('=', 1) for kv in args.data_root)
    metrics = {}

    def evaluate(rel: str):
        path = _bench_path(rel)
        stem = osp.splitext(osp.basename(path))[0]
        if stem in metrics:
            return metrics[stem]
        bench = Config.fromfile(path)
        root = roots.get(stem, bench.test_dataloader.dataset.get('data_root'))
        if args.skip_missing and root and not osp.exists(root):
            print(f'[eval_report] skipping {stem}: no {root}')
            return None
        tic = time.time()
        run = run_zero_shot_seg if bench.get('model', {}).get(
            'type') == 'ZeroShotSegmentor' else run_benchmark
        metrics[stem] = run(model_cfg, bench, args.checkpoint,
                            osp.join(args.work_dir, stem), roots.get(stem))
        metrics[stem]['seconds'] = time.time() - tic
        return metrics[stem]

    sections = [f'## Downstream evaluation of `{args.checkpoint}`', '',
                f'Config `{args.config}`; numbers in %. The paper rows are '
                'ViT-B/16, 25 epochs on L-20M.', '']
    others = []
    for proto in args.protocols:
        if proto == 'table6':
            cols, ours, theirs = [], [], []
            for i, col in enumerate(paper.TABLE6_COLUMNS):
                m = evaluate(f'zero_shot/{TABLE6_FILES[col]}')
                cols.append(col)
                ours.append(None if m is None else m['zero-shot/score'])
                theirs.append(paper.TABLE6[args.paper_row][i])
            sections.append(_table('Zero-shot classification (Table 6)',
                                   cols, ours, theirs, args.paper_row))
        elif proto == 'table8':
            cols, ours, theirs = [], [], []
            for i, col in enumerate(paper.TABLE8_COLUMNS):
                m = evaluate(f'ood/{TABLE8_FILES[col]}')
                cols.append(col)
                ours.append(None if m is None else m['zero-shot/score'])
                theirs.append(paper.TABLE8[args.paper_row][i])
            sections.append(_table('Zero-shot OOD classification (Table 8)',
                                   cols, ours, theirs, args.paper_row))
        elif proto == 'table7':
            for name, stem in TABLE7_FILES.items():
                m = evaluate(f'retrieval/{stem}')
                if m is None:
                    continue
                ours = [m[f'retrieval/{c}'] for c in paper.TABLE7_COLUMNS]
                theirs = paper.TABLE7[name][args.paper_row]
                sections.append(_table(f'Retrieval on {name} (Table 7)',
                                       paper.TABLE7_COLUMNS, ours, theirs,
                                       args.paper_row, average=False, digits=2))
        elif proto == 'zero_shot_seg':
            ms = [evaluate(f'zero_shot_seg/{s}') for s in ZERO_SHOT_SEG_SETS.values()]
            sections.append(_table(
                'Training-free zero-shot segmentation, mIoU (SCLIP row: its CLIP ViT-B/16)',
                list(ZERO_SHOT_SEG_SETS), [None if m is None else m['mIoU'] for m in ms],
                [SCLIP_VITB16_MIOU[k] for k in ZERO_SHOT_SEG_SETS], 'SCLIP', digits=2))
        elif proto == 'table4':
            bench = Config.fromfile(_bench_path('low_shot/imagenet_lowshot'))
            train_root = roots.get('imagenet_train', bench.train_dataset.data_root)
            if args.skip_missing and not osp.isdir(train_root):
                print(f'[eval_report] skipping table4: no {train_root}')
                continue
            res = run_low_shot(model_cfg, bench, args.checkpoint, train_root,
                               roots.get('imagenet_val'))
            metrics['low_shot'] = {str(k): v for k, v in res.items()}
            cols = [f'{k} img/class' for k in res]
            paper_cells = dict(zip(paper.TABLE4_SHOTS, paper.TABLE4[args.paper_row]))
            lines = ['### Low-shot ImageNet-1K, logistic regression (Table 4)', '',
                     '| | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|',
                     '| this checkpoint | ' + ' | '.join(
                         format_mean_std(r) for r in res.values()) + ' |',
                     f'| {args.paper_row} (paper) | ' + ' | '.join(
                         '–' if k not in paper_cells else
                         f'{paper_cells[k][0]:.1f} ± {paper_cells[k][1]:.2f}'
                         for k in res) + ' |', '']
            sections.append('\n'.join(lines))
        else:
            m = evaluate(proto)
            if m is not None:
                others.append((proto, m))
    for proto, m in others:
        keys = [k for k in m if k != 'seconds']
        sections.append(_table(f'{proto}', keys, [m[k] for k in keys],
                               [None] * len(keys), args.paper_row,
                               average=False))
    report = '\n'.join(sections)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(report)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(metrics, f, indent=2)
    print(report)
    return report


if __name__ == '__main__':
    run(parse_args())
