"""Train toy configs for the same number of steps on the toy corpus and compare them.

Every config is trained in its own process (so that its peak memory is its own) with the
same iteration budget, batch size, seed and schedule (linear warm-up over the first 10 % of
the steps, cosine to 1e-5; each config's optimizer otherwise). Then:

* zero-shot top-1 on the held-out split (``val.csv``), for methods with a text tower;
* linear-probe top-1: scikit-learn logistic regression on the frozen encoder's
  mean-pooled patch features of the training images (``train.jsonl`` labels), tested on
  the held-out split; every method;
* dense zero-shot mIoU: training-free segmentation of the held-out images by the class
  names (:mod:`rils_mm.evaluation.dense_zero_shot`), for methods with a text tower;
* step time: mean wall time of ``train_step`` (forward, backward, optimizer; data loading
  excluded) after the first iterations;
* peak memory: the process's peak resident set (``VmHWM``) on CPU (includes Python, the
  libraries and the data), ``torch.cuda.max_memory_allocated`` on a GPU.

One Markdown table is written (``--out``) with the command and the machine. The logic is
:mod:`rils_mm.benchmark.compare`.

Example::

    python tools/make_toy_corpus.py data/toy
    python tools/compare_methods.py configs/clip/clip_vittiny_toy.py \\
        configs/rils/rils_vittiny_toy.py configs/mae/mae_vittiny_toy.py \\
        --data-root data/toy --iters 300 --out work_dirs/compare_methods/table.md
"""
import argparse
import json
import os
import os.path as osp
import shlex
import subprocess
import sys

from project_env import setup_tool

REPO_ROOT = setup_tool(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train toy configs for the same number of steps and compare them '
        '(zero-shot, linear probe, step time, peak memory) in one Markdown table.')
    parser.add_argument('configs', nargs='+', help='toy config files, in table order')
    parser.add_argument('--data-root', default='data/toy',
                        help='toy corpus (tools/make_toy_corpus.py)')
    parser.add_argument('--iters', type=int, default=300, help='training steps per method')
    parser.add_argument('--batch-size', type=int, default=64, help='training batch size')
    parser.add_argument('--seed', type=int, default=0, help='random seed (all methods)')
    parser.add_argument('--seeds', type=int, nargs='+', default=None,
                        help='run every seed and write one mean ± std table')
    parser.add_argument('--probe-c', type=float, default=1.0,
                        help='inverse regularisation C of the logistic regression')
    parser.add_argument('--work-dir', default='work_dirs/compare_methods')
    parser.add_argument('--out', default=None,
                        help='Markdown table path (default: WORK_DIR/table.md)')
    parser.add_argument('--reuse', action='store_true',
                        help='reuse a method\'s result file in WORK_DIR when it was made with '
                        'the same steps, batch size, seed, probe C and data root')
    parser.add_argument('--single', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--result', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 2:
        parser.error(f'--iters must be >= 2, got {args.iters}')
    return args


def main(argv=None):
    args = parse_args(argv)
    from rils_mm.benchmark.compare import machine_line, markdown, run_single, settings_of
    if args.single:
        run_single(args.single, args, args.result, REPO_ROOT)
        return
    if args.seeds:
        from rils_mm.evaluation.dense_zero_shot import run_seeds
        return run_seeds(main, args, argv, machine_line())
    if not osp.isfile(osp.join(args.data_root, 'val.csv')):
        raise FileNotFoundError(
            f'no toy corpus at {args.data_root!r} (val.csv missing): run '
            f'`python tools/make_toy_corpus.py {args.data_root}` first')
    for path in args.configs:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config {path!r} does not exist')
    os.makedirs(args.work_dir, exist_ok=True)
    results = []
    for path in args.configs:
        name = osp.splitext(osp.basename(path))[0]
        result_path = osp.join(args.work_dir, f'{name}.json')
        cmd = [sys.executable, osp.abspath(__file__), path, '--single', path, '--result',
               result_path, '--data-root', args.data_root, '--iters', str(args.iters),
               '--batch-size', str(args.batch_size), '--seed', str(args.seed),
               '--probe-c', str(args.probe_c), '--work-dir', args.work_dir]
        if args.reuse and osp.isfile(result_path):
            with open(result_path) as f:
                previous = json.load(f)
            if previous.get('settings') == settings_of(args):
                print(f'[compare_methods] reusing {result_path}', flush=True)
                results.append(previous)
                continue
        print(f'[compare_methods] training {path} for {args.iters} steps', flush=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [REPO_ROOT] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
        subprocess.run(cmd, check=True, env=env)
        with open(result_path) as f:
            results.append(json.load(f))
        print(f'[compare_methods] {json.dumps(results[-1])}', flush=True)
    command = 'python tools/compare_methods.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    table = markdown(results, args, command, machine_line())
    out = args.out or osp.join(args.work_dir, 'table.md')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
