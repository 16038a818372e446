"""Same-budget training of toy configs and their comparison table (``tools/compare_methods.py``).

Each config trains in its own process (:func:`run_single`, so that its peak memory is its
own, measured as :mod:`.memory` does) with the same iterations, batch size, seed and
schedule; then zero-shot top-1 (methods with a text tower), a linear probe on frozen
features (every method), step time and peak memory go into one Markdown table
(:func:`markdown`).

The options come as an ``argparse.Namespace`` with ``data_root``, ``iters``,
``batch_size``, ``seed``, ``probe_c`` and ``work_dir``.
"""
import json
import os.path as osp
import time

from .memory import peak_memory
from .timing import sync


def settings_of(args) -> dict:
    """What a result depends on besides the config (``--reuse`` compares these)."""
    return dict(iters=args.iters, batch_size=args.batch_size, seed=args.seed,
                probe_c=args.probe_c, data_root=osp.abspath(args.data_root))


def prepare_cfg(path, args, work_dir):
    """The config with the comparison's data root, budget, seed and schedule (linear
    warm-up over the first 10 % of the steps, cosine to 1e-5)."""
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
    """A hook recording the wall time of every ``train_step`` (data loading excluded)."""
    from mmengine.hooks import Hook

    class StepTimer(Hook):
        priority = 'VERY_HIGH'

        def __init__(self):
            self.times, self._start = [], None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            sync('cuda' if _cuda() else 'cpu')
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            sync('cuda' if _cuda() else 'cpu')
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


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


def linear_probe(model, cfg, args) -> float:
    """Top-1 (%) of a logistic regression on frozen features: train.jsonl labels ->
    val.csv."""
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


def run_single(config, args, result_path, repo_root) -> dict:
    """Train ``config`` in this process, evaluate it and write its result (JSON) to
    ``result_path``; call it in a fresh process, so that the peak memory is its own."""
    from mmengine.runner import Runner

    import rils_mm  # noqa: F401
    name = osp.splitext(osp.basename(config))[0]
    cfg = prepare_cfg(config, args, osp.join(args.work_dir, name))
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
    memory = peak_memory('cuda' if _cuda() else 'cpu')
    result = dict(
        config=osp.relpath(osp.abspath(config), repo_root), method=model.__class__.__name__,
        params_m=sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        zero_shot_top1=zero_shot, linear_probe_top1=probe, dense_zero_shot_miou=dense,
        step_ms=1000 * sum(times) / len(times), train_s=train_s,
        peak_mib=memory['peak_mib'], memory='cuda' if _cuda() else 'rss',
        final_losses=losses, settings=settings_of(args))
    with open(result_path, 'w') as f:
        json.dump(result, f)
    return result


def machine_line() -> str:
    """The machine of the table: :func:`rils_mm.utils.cpu.cpu_summary` and the GPU."""
    import torch

    from rils_mm.utils.cpu import cpu_summary
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f'{cpu_summary()}, {dev}'


def fmt(value, spec='.1f') -> str:
    return '—' if value is None else format(value, spec)


def markdown(results, args, command, machine) -> str:
    """The comparison table, its settings, the command and the machine."""
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
        'fit on the training images, scored on the held-out split. Peak memory: the '
        'training process\'s peak resident set (VmHWM) on CPU, max allocated on a GPU.',
        '',
        f'Command: `{command}`',
        '',
        f'Machine: {machine}.',
    ]
    return '\n'.join(lines) + '\n'
