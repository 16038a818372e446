"""Generate the deterministic toy image-text corpus used by tests and the CPU demo.

Example::

    python tools/make_toy_corpus.py data/toy --num-train 2000 --num-val 400
"""
import argparse
import csv
import json
import os.path as osp
import time

from project_env import setup_tool

REPO_ROOT = setup_tool(__name__)

from rils_mm.testing import generate_toy_corpus  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the deterministic toy image-text corpus '
        '(JPEGs + CSV/JSONL + WebDataset shards + labelled val split).')
    parser.add_argument('out_dir', help='output directory')
    parser.add_argument('--num-train', type=int, default=2000,
                        help='number of training image-caption pairs')
    parser.add_argument('--num-val', type=int, default=400,
                        help='number of labelled validation images')
    parser.add_argument('--image-size', type=int, default=64, help='image side')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--shard-size', type=int, default=500,
                        help='samples per WebDataset shard')
    parser.add_argument('--jpeg-quality', type=int, default=90, help='JPEG quality')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    reused = osp.isfile(osp.join(args.out_dir, 'meta.json'))
    start = time.perf_counter()
    info = generate_toy_corpus(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        seed=args.seed,
        shard_size=args.shard_size,
        jpeg_quality=args.jpeg_quality)
    elapsed = time.perf_counter() - start
    with open(info['meta'], encoding='utf-8') as f:
        meta = json.load(f)
    reused = reused and meta.get('args') == dict(
        num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
        seed=args.seed, shard_size=args.shard_size, jpeg_quality=args.jpeg_quality)
    with open(info['train_csv'], newline='', encoding='utf-8') as f:
        captions = [row['caption'] for _, row in zip(range(5), csv.DictReader(f))]

    print(f"Toy corpus at {info['root']} "
          f"({'up to date, reused' if reused else 'generated'} in {elapsed:.2f}s)")
    print(f"  train: {info['num_train']} image-caption pairs, "
          f"{args.image_size}x{args.image_size} px, seed {args.seed}")
    print(f"    csv:    {info['train_csv']}")
    print(f"    jsonl:  {info['train_jsonl']}")
    print(f"    shards: {len(info['shards'])} x <= {args.shard_size} samples: "
          f"{info['shard_pattern']}")
    print(f"  val:   {info['num_val']} labelled images: {info['val_csv']}")
    print(f"  classes ({len(info['classes'])}, chance "
          f"{100 / len(info['classes']):.2f}%): {', '.join(info['classes'])}")
    print(f"    classnames: {info['classnames']}")
    print(f"    templates:  {info['templates']}")
    print(f"  meta: {info['meta']}")
    print('  caption examples:')
    for caption in captions:
        print(f'    - {caption}')
    return info


if __name__ == '__main__':
    main()
