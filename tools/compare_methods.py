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
* peak memory: the process's peak resident set size on CPU (includes Python, the libraries
  and the data), ``torch.cuda.max_memory_allocated`` on a GPU.

One Markdown table is written (``--out``) with the command and the machine.

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
import platform
import resource
import shlex
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


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


# ------------------------------------------------------------------ one method (child)
def prepare_cfg(path, args, work_dir):
    """The config with the comparison's data root, budget, seed and schedule."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    cfg.work_dir = work_dir
    root = osp.abspath(args.data_root)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(key):
            cfg[key].dataset.data_root = root
            cfg[key].num_workers = 0
            cfg[key].persistent_workers = False
    cfg.train_dataloader.batch_size = args.batch_size
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters,
                         val_interval=args.iters + 1)
    warmup = max(1, args.iters // 10)
    start = cfg.param_scheduler[0].get('start_factor', 1e-3) if cfg.get(
        'param_scheduler') else 1e-3
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=start, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=warmup,
             end=args.iters),
    ]
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, args.iters // 10))
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=args.seed, diff_rank_seed=False)
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),
                       mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
    return cfg


def make_step_timer():
    from mmengine.hooks import Hook

    class StepTimer(Hook):
        """Wall time of every ``train_step`` (hooks after data loading)."""
        priority = 'VERY_HIGH'

        def __init__(self):
            self.times, self._start = [], None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._sync()
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self._sync()
            self.times.append(time.perf_counter() - self._start)

        @staticmethod
        def _sync():
            import torch
            if torch.cuda.is_available():
                torch.cuda.synchronize()

    return StepTimer()


def extract_features(model, dataloader):
    """Mean-pooled last-layer patch tokens of the frozen encoder, and the labels."""
    import torch
    feats, labels = [], []
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        with torch.no_grad():
            out = model.extract_feat(data['inputs'])
        tokens = out[-1] if isinstance(out, (tuple, list)) else out
        if tokens.dim() != 3:
            raise ValueError(f'expected (B, 1 + N, C) tokens from extract_feat, got '
                             f'{tuple(tokens.shape)}')
        feats.append(tokens[:, 1:].mean(1).float().cpu())
        labels.extend(int(ds.gt_label) for ds in data['data_samples'])
    return torch.cat(feats).numpy(), labels


def linear_probe(model, cfg, args):
    """Logistic regression on frozen features: train.jsonl labels -> val.csv."""
    from mmengine.runner import Runner
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    pipeline = cfg.get('test_pipeline')
    root = osp.abspath(args.data_root)
    loaders = []
    for ann in ('train.jsonl', 'val.csv'):
        loaders.append(Runner.build_dataloader(dict(
            batch_size=128, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='ZeroShotClsDataset', data_root=root, ann_file=ann,
                         classnames='classnames.txt', templates='templates.txt',
                         pipeline=pipeline))))
    model.eval()
    x_train, y_train = extract_features(model, loaders[0])
    x_val, y_val = extract_features(model, loaders[1])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=args.probe_c, max_iter=3000))
    clf.fit(x_train, y_train)
    return 100.0 * float((clf.predict(x_val) == y_val).mean())


def run_single(args):
    import torch
    from mmengine.runner import Runner

    import rils_mm  # noqa: F401
    name = osp.splitext(osp.basename(args.single))[0]
    cfg = prepare_cfg(args.single, args, osp.join(args.work_dir, name))
    runner = Runner.from_cfg(cfg)
    timer = make_step_timer()
    runner.register_hook(timer)
    start = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - start
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    hub = runner.message_hub
    losses = {k[len('train/'):]: float(v.current()) for k, v in hub.log_scalars.items()
              if k.startswith('train/loss')}
    zero_shot = dense = None
    if hasattr(model, 'set_zero_shot_classifier') and cfg.get('val_dataloader'):
        zero_shot = float(runner.val_loop.run()['accuracy/top1'])
        from rils_mm.evaluation.dense_zero_shot import toy_dense_zero_shot
        dense = toy_dense_zero_shot(model, osp.abspath(args.data_root))['mIoU']
    probe = linear_probe(model, cfg, args)
    skip = min(5, len(timer.times) // 5)
    times = timer.times[skip:]
    if torch.cuda.is_available():
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        memory = 'cuda'
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        memory = 'rss'
    result = dict(
        config=osp.relpath(osp.abspath(args.single), REPO_ROOT), method=model.__class__.__name__,
        params_m=sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        zero_shot_top1=zero_shot, linear_probe_top1=probe, dense_zero_shot_miou=dense,
        step_ms=1000 * sum(times) / len(times), train_s=train_s, peak_mib=peak_mib,
        memory=memory, final_losses=losses, settings=settings_of(args))
    with open(args.result, 'w') as f:
        json.dump(result, f)


# ------------------------------------------------------------------ the table (parent)
def settings_of(args):
    return dict(iters=args.iters, batch_size=args.batch_size, seed=args.seed,
                probe_c=args.probe_c, data_root=osp.abspath(args.data_root))


def machine_line():
    cpu = platform.processor() or 'unknown CPU'
    flags = ''
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
        words = set(info.split())
        flags = ', '.join(f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_tile')
                          if f in words) or 'no AVX2'
    except OSError:
        pass
    import torch
    threads = torch.get_num_threads()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return (f'{cpu} (flags: {flags}), {os.cpu_count()} logical CPUs, torch '
            f'{torch.__version__} with {threads} thread(s), {dev}')


def fmt(value, spec='.1f'):
    return '—' if value is None else format(value, spec)


def markdown(results, args, command, machine):
    mem = 'peak GPU memory (MiB)' if any(r['memory'] == 'cuda' for r in results) else \
        'peak RSS (MiB)'
    lines = [
        f'| config | method | trainable params (M) | zero-shot top-1 (%) | '
        f'linear-probe top-1 (%) | dense zero-shot mIoU (%) | step time (ms) | {mem} | '
        'final losses |', '|---|---|---:|---:|---:|---:|---:|---:|---|',
    ]
    for r in results:
        losses = ', '.join(f'{k} {v:.3f}' for k, v in sorted(r['final_losses'].items()))
        lines.append(
            f"| `{r['config']}` | {r['method']} | {r['params_m']:.2f} | "
            f"{fmt(r['zero_shot_top1'])} | {fmt(r['linear_probe_top1'])} | "
            f"{fmt(r.get('dense_zero_shot_miou'))} | "
            f"{r['step_ms']:.0f} | {r['peak_mib']:.0f} | {losses} |")
    lines += [
        '',
        f'{args.iters} steps of batch {args.batch_size} per method, seed {args.seed}, toy '
        f'corpus `{args.data_root}`; "—": no text tower. Linear probe: logistic regression '
        f'(C={args.probe_c}) on standardised mean-pooled patch features of the frozen encoder, '
        'fit on the training images, scored on the held-out split.',
        '',
        f'Command: `{command}`',
        '',
        f'Machine: {machine}.',
    ]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.single:
        run_single(args)
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
