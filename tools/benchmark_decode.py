"""Decode + random-resized-crop throughput per core on LAION-like JPEGs.

    python tools/benchmark_decode.py --num-images 64 --rounds 3

Compares, alternating in one process on one core (cv2/torch threads = 1):

* ``naive PIL``: what the LAION pipeline does now, full decode
  (:func:`decode_image_bgr`) then mmpretrain's ``RandomResizedCrop``;
* ``draft``: :class:`DecodeRandomResizedCrop`, which draws the same box and
  decodes the JPEG (cv2, straight to BGR) at the smallest DCT scale that keeps
  the box >= 224 px;
* ``torchvision``: ``torchvision.io.decode_jpeg`` (full decode) then the same
  crop, for reference.

The images are synthetic JPEGs whose sizes follow LAION's range (shorter side
uniform in 256-1024 px, aspect ratio 3:4-16:9, quality 90; content: smooth
colour fields plus texture and noise, so the entropy coder has real work).
Before each decode the numpy RNG is reseeded identically for every path, so
all paths crop the same box and the outputs can be compared: the table counts
identical outputs and gives the PSNR of the others against the naive path.
"""
import argparse
import io
import statistics
import time

import numpy as np
from project_env import setup_tool

setup_tool(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-images', type=int, default=48)
    parser.add_argument('--rounds', type=int, default=3,
                        help='passes over the images per path (alternating)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--min-side', type=int, default=256)
    parser.add_argument('--max-side', type=int, default=1024)
    parser.add_argument('--quality', type=int, default=90)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def laion_like_jpegs(num, min_side=256, max_side=1024, quality=90, seed=0):
    """``num`` encoded JPEGs of LAION-like sizes (see the module docstring)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    ratios = np.array([3 / 4, 1., 4 / 3, 3 / 2, 16 / 9])
    out = []
    for _ in range(num):
        short = int(rng.integers(min_side, max_side + 1))
        ratio = float(rng.choice(ratios))
        w, h = (int(short * ratio), short) if rng.random() < 0.7 else (
            short, int(short * ratio))
        coarse = rng.random((max(2, h // 64), max(2, w // 64), 3)) * 255
        img = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize(
            (w, h), Image.BICUBIC), dtype=np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        img += 30 * np.sin(xx / rng.uniform(3, 12))[..., None]
        img += rng.normal(0, 3, img.shape)
        buff = io.BytesIO()
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
            buff, 'JPEG', quality=quality)
        out.append(buff.getvalue())
    return out


def main(argv=None):
    args = parse_args(argv)
    import cv2
    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    import torchvision
    from mmpretrain.datasets.transforms import RandomResizedCrop
    from torchvision.io import decode_jpeg

    import rils_mm  # noqa: F401
    from rils_mm.datasets.draft_decode import DecodeRandomResizedCrop, psnr
    from rils_mm.datasets.transforms import decode_image_bgr
    from rils_mm.utils.cpu import cpu_summary

    crop_range = (0.5, 1.0)  # the RILS recipe (DESIGN.md)
    rrc = RandomResizedCrop(scale=args.size, crop_ratio_range=crop_range)
    fast = DecodeRandomResizedCrop(scale=args.size, crop_ratio_range=crop_range)
    jpegs = laion_like_jpegs(args.num_images, args.min_side, args.max_side,
                             args.quality, args.seed)

    def naive(data):
        return rrc.transform(dict(img=decode_image_bgr(data)))['img']

    def draft(data):
        return fast.transform(dict(img_bytes=data))['img']

    def tv(data):
        rgb = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        bgr = np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[:, :, ::-1])
        return rrc.transform(dict(img=bgr))['img']

    paths = dict(naive=naive, draft=draft, torchvision=tv)
    times = {k: [] for k in paths}
    outputs = {k: [] for k in paths}
    reductions = []
    for r in range(args.rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            for i, data in enumerate(jpegs):
                np.random.seed(args.seed + i)  # the same box on every path
                out = fn(data)
                if r == 0:
                    outputs[name].append(out)
            times[name].append(time.perf_counter() - start)
    for i, data in enumerate(jpegs):
        np.random.seed(args.seed + i)
        reductions.append(fast.transform(dict(img_bytes=data))['decode_reduction'])

    n = len(jpegs)
    print(f'CPU: {cpu_summary()}; 1 core (torch/cv2 threads 1); '
          f'Pillow {__import__("PIL").__version__}, torchvision '
          f'{torchvision.__version__}')
    print(f'{n} LAION-like JPEGs (shorter side {args.min_side}-{args.max_side}'
          f' px, q{args.quality}), RandomResizedCrop {args.size} '
          f'scale {crop_range}; median of {args.rounds} alternating passes')
    print(f'{"path":<14}{"img/s/core":>12}{"ms/img":>9}{"vs naive":>10}'
          f'   PSNR vs naive (dB): identical outputs, others mean / min')
    base = statistics.median(times['naive'])
    for name in paths:
        t = statistics.median(times[name])
        p = [psnr(a, b) for a, b in zip(outputs[name], outputs['naive'])]
        same = sum(np.isinf(p))
        finite = [v for v in p if np.isfinite(v)]
        q = '-' if name == 'naive' else (
            f'{same}/{n} identical' + (f', others {np.mean(finite):.1f} / '
                                       f'{np.min(finite):.1f}' if finite else ''))
        print(f'{name:<14}{n / t:>12.1f}{1000 * t / n:>9.2f}{base / t:>9.2f}x   {q}')
    counts = {k: reductions.count(k) for k in (1, 2, 4, 8)}
    print('draft DCT reductions used: ' + ', '.join(
        f'1/{k}: {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main()
