"""Plot training curves of one or several rils-mm runs into a PNG.

    python tools/analysis/plot_logs.py work_dirs/rils_vittiny_toy [more runs ...] \
        [--keys loss_contrastive loss_recon aligned_ratio logit_scale lr] [--out curves.png]

Each run is a work dir (its newest ``<timestamp>/vis_data/scalars.json`` is used), a
timestamp folder, or a ``scalars.json`` file: the JSON-lines file mmengine's
``LocalVisBackend`` writes (one line per logged iteration, ``step`` = iteration; the
validation lines, ``step`` = epoch, are plotted for ``accuracy/*`` keys).
One panel per key, one line per run. Default keys: both weighted loss terms (lambda_1
L_contra and lambda_2 L_recon, Eq. 10), their sum, |C|/B (``aligned_ratio``, the share
of correctly matched images the reconstruction uses), the logit scale 1/sigma and the
learning rate.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__, required=('matplotlib', ))  # without the stack: .venv's Python

DEFAULT_KEYS = ('loss', 'loss_contrastive', 'loss_recon', 'aligned_ratio',
                'logit_scale', 'lr')


def find_scalars(path: str) -> str:
    """The ``scalars.json`` of a run given as a file, a timestamp folder or a
    work dir (newest timestamp folder that has one)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path}: no such file or directory (expected a work '
                                'dir, a <timestamp> folder or a scalars.json file)')
    direct = osp.join(path, 'vis_data', 'scalars.json')
    if osp.isfile(direct):
        return direct
    found = sorted(glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(
            f'{path}: no */vis_data/scalars.json inside; was the run logged with '
            "mmengine's LocalVisBackend (configs/_base_/default_runtime.py)?")
    return found[-1]


def load_scalars(path: str) -> Tuple[Dict[str, List[Tuple[int, float]]], str]:
    """Read a scalars.json into ``{key: [(step, value), ...]}``.

    Training lines carry ``iter``; validation lines do not (their ``step`` is
    the epoch). Returns the curves and the file actually read.
    """
    path = find_scalars(path)
    curves: Dict[str, List[Tuple[int, float]]] = {}
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f'{path}:{lineno}: not a JSON line ({e})') from None
            if not isinstance(record, dict) or 'step' not in record:
                raise ValueError(f'{path}:{lineno}: expected a JSON object with a '
                                 f'"step" key, got {line[:80]!r}')
            step = int(record['step'])
            for key, value in record.items():
                if key in ('step', 'iter', 'epoch') or not isinstance(value, (int, float)):
                    continue
                curves.setdefault(key, []).append((step, float(value)))
    return curves, path


def plot_runs(runs: Sequence[str], keys: Sequence[str] = DEFAULT_KEYS,
              labels: Sequence[str] = None, out: str = 'curves.png',
              dpi: int = 100) -> str:
    """Plot ``keys`` of every run, one panel per key, into the PNG ``out``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError('give at least one run (work dir or scalars.json)')
    loaded = [load_scalars(r) for r in runs]
    labels = list(labels) if labels else [_label(r) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f'{len(labels)} labels for {len(runs)} runs')
    for key in keys:
        if not any(key in curves for curves, _ in loaded):
            available = sorted(set().union(*(c for c, _ in loaded)))
            raise KeyError(f"no run logged '{key}' ({', '.join(p for _, p in loaded)}); "
                           f"available: {', '.join(available)}")
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for (curves, _), label in zip(loaded, labels):
            if key in curves:
                steps, values = zip(*curves[key])
                ax.plot(steps, values, label=label, marker='.' if len(steps) < 20 else None)
        ax.set_title(key)
        ax.set_xlabel('epoch' if key.startswith('accuracy') else 'iteration')
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    if len(runs) > 1:
        axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def _label(run: str) -> str:
    path = osp.abspath(run)
    if osp.isfile(path):  # .../<work_dir>/<timestamp>/vis_data/scalars.json
        path = osp.dirname(osp.dirname(osp.dirname(path)))
    return osp.basename(path.rstrip('/'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+',
                        help='work dirs, <timestamp> folders or scalars.json files')
    parser.add_argument('--keys', nargs='+', default=list(DEFAULT_KEYS),
                        help='scalars to plot (default: %(default)s)')
    parser.add_argument('--labels', nargs='+', help='legend names, one per run')
    parser.add_argument('--out', default='curves.png', help='PNG to write')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = plot_runs(args.runs, args.keys, args.labels, args.out)
    except (FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(f'plot_logs: {e.args[0] if e.args else e}')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
