"""Long runs: the resident memory of the WebDataset reader over a long stream.

    python -m rils_mm.benchmark.stream_memory --samples 100000 --workers 2 \\
        --out work_dirs/stream_memory.json

writes shards of small JPEG samples (``--image-size`` px, a caption each) into a
temporary folder, streams ``--samples`` samples through :class:`WebImageTextDataset`
(``RandomResizedCrop`` -> ``TokenizeText`` -> ``PackImageTextInputs``) and a
``DataLoader`` with ``--workers`` workers, and samples the resident memory of the
process and of its loader workers every ``--every`` samples: ``VmRSS`` and ``Pss``
(shared pages split between the processes that map them, so the sum over processes
is not counted twice) from ``/proc``, read with :mod:`psutil` when it is installed.

The JSON holds the curve and ``growth_pct``: the last point's summed PSS against
the first point after ``--warmup`` of the samples (the shuffle buffers, the
tokenizer and the allocator's pools have filled by then), in %.
"""
import argparse
import io
import json
import os
import os.path as osp
import tempfile
import time
from typing import Dict, List, Optional

__all__ = ['process_memory', 'write_jpeg_shards', 'stream_memory_curve']


def process_memory(pid: int) -> Optional[Dict[str, int]]:
    """``{'rss': bytes, 'pss': bytes}`` of process ``pid`` (``pss`` = ``rss``
    where ``/proc/<pid>/smaps_rollup`` is missing), ``None`` once it has exited."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:
            return None
        return dict(rss=int(info.rss), pss=int(getattr(info, 'pss', info.rss)))
    out = {}
    for path, key, name in ((f'/proc/{pid}/status', 'State:', 'state'),
                            (f'/proc/{pid}/status', 'VmRSS:', 'rss'),
                            (f'/proc/{pid}/smaps_rollup', 'Pss:', 'pss')):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        value = line.split()[1]
                        out[name] = value if name == 'state' else int(value) * 1024
                        break
        except OSError:
            pass
    if 'rss' not in out:
        if out.get('state', 'Z') in ('Z', 'X'):
            return None  # exited (a worker at the end of its share), or a zombie
        raise RuntimeError(f'no VmRSS in /proc/{pid}/status (install psutil)')
    out.setdefault('pss', out['rss'])
    return dict(rss=out['rss'], pss=out['pss'])


def write_jpeg_shards(folder: str, num_shards: int, per_shard: int,
                      image_size: int = 32, seed: int = 0) -> List[str]:
    """``num_shards`` shards of ``per_shard`` random ``image_size`` px JPEGs with
    captions (``KEY.jpg``, ``KEY.txt``); returns their paths."""
    import numpy as np
    from PIL import Image

    from rils_mm.testing import write_tar_shard

    rng = np.random.default_rng(seed)
    paths = []
    for s in range(num_shards):
        members = []
        for i in range(per_shard):
            buf = io.BytesIO()
            pixels = rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buf, format='JPEG', quality=90)
            key = f'{s:05d}{i:06d}'
            members += [(f'{key}.jpg', buf.getvalue()),
                        (f'{key}.txt', f'a photo number {i} of shard {s}'.encode())]
        paths.append(write_tar_shard(osp.join(folder, f'{s:05d}.tar'), members))
    return paths


def stream_memory_curve(urls, num_samples: int, num_workers: int = 2, batch_size: int = 64,
                        every: int = 2000, image_size: int = 32, warmup: float = 0.1,
                        shuffle_buffer: int = 1000) -> dict:
    """Stream ``num_samples`` samples of ``urls`` and record the memory curve.

    Returns:
        dict: ``curve`` (``[{'samples', 'seconds', 'rss', 'pss', 'processes'}]``,
        bytes summed over the main process and its live loader workers, a point
        every ``every`` samples), ``growth_pct`` (PSS, the last point with all
        workers alive against the first at or after ``warmup`` of the stream),
        ``rss_growth_pct`` (the same for RSS), ``samples``, ``seconds`` and
        ``samples_per_s``.
    """
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from rils_mm.datasets.transforms import get_clip_tokenizer
    from rils_mm.datasets.webdataset import WebImageTextDataset

    get_clip_tokenizer()  # before the workers fork
    ds = WebImageTextDataset(
        urls, num_samples=num_samples, batch_size=batch_size, shuffle_buffer=shuffle_buffer,
        pipeline=[dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0)),
                  dict(type='TokenizeText'), dict(type='PackImageTextInputs')])
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=pseudo_collate)
    curve: List[dict] = []
    seen, next_point, start = 0, 0, time.perf_counter()
    iterator = iter(loader)
    pids = [os.getpid()] + [w.pid for w in getattr(iterator, '_workers', [])]

    def point():
        mems = [m for m in map(process_memory, pids) if m is not None]
        curve.append(dict(samples=seen, seconds=round(time.perf_counter() - start, 2),
                          rss=sum(m['rss'] for m in mems), pss=sum(m['pss'] for m in mems),
                          processes=len(mems)))

    for batch in iterator:
        seen += len(batch['data_samples'])
        if seen >= next_point:
            point()
            next_point += every
    seconds = time.perf_counter() - start

    def growth(key):  # the last point with all processes alive against the base
        base = next(p for p in curve if p['samples'] >= warmup * seen)
        last = [p for p in curve if p['processes'] == base['processes']][-1]
        return round(100.0 * (last[key] - base[key]) / base[key], 2)

    return dict(samples=seen, seconds=round(seconds, 1),
                samples_per_s=round(seen / seconds, 1), workers=num_workers,
                batch_size=batch_size, image_size=image_size, warmup=warmup,
                growth_pct=growth('pss'), rss_growth_pct=growth('rss'), curve=curve)


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description='Resident memory of a long WebDataset stream')
    p.add_argument('--samples', type=int, default=100_000, help='samples streamed')
    p.add_argument('--workers', type=int, default=2, help='data-loader workers')
    p.add_argument('--shards', type=int, default=20, help='shards written')
    p.add_argument('--image-size', type=int, default=32, help='JPEG side in px')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--every', type=int, default=2000, help='samples between two points')
    p.add_argument('--out', help='JSON file for the curve')
    args = p.parse_args(argv)
    # a batch more than needed: no worker runs out of its shards (no repeats)
    per_shard = -(-args.samples // args.shards) + args.batch_size
    with tempfile.TemporaryDirectory() as folder:
        urls = write_jpeg_shards(folder, args.shards, per_shard, args.image_size)
        result = stream_memory_curve(urls, args.samples, args.workers, args.batch_size,
                                     args.every, args.image_size)
    result['command'] = 'python -m rils_mm.benchmark.stream_memory ' + ' '.join(
        argv if argv is not None else __import__('sys').argv[1:])
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    mib = 1 << 20
    print(f"{result['samples']} samples in {result['seconds']} s "
          f"({result['samples_per_s']}/s), {args.workers} workers: PSS "
          f"{result['curve'][0]['pss'] / mib:.0f} -> {result['curve'][-1]['pss'] / mib:.0f} MiB, "
          f"growth after warm-up {result['growth_pct']} % (RSS {result['rss_growth_pct']} %)")
    return result


if __name__ == '__main__':
    main()
