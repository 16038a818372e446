"""Segment an image by a list of words, side by side for two (or more) checkpoints.

    python tools/analysis/visualize_zero_shot_seg.py IMAGE \
        --words "red circle" "blue square" "green triangle" \
        --configs configs/rils/rils_vittiny_toy.py configs/clip/clip_vittiny_toy.py \
        --checkpoints rils.pth clip.pth [--out zero_shot_seg.png]

Training-free: each checkpoint's ZeroShotSegmentor scores every patch's ||theta(f^k)||
against the words' prompt embeddings (Eq. 8 without the softmax; sliding windows of the
model's input size when the image is larger) and colours each pixel by its best word.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('image', help='image file')
    p.add_argument('--words', nargs='+', required=True, help='two or more class names')
    p.add_argument('--configs', nargs='+', required=True,
                   help="each checkpoint's pre-training config (same order)")
    p.add_argument('--checkpoints', nargs='+', required=True, help='checkpoint files')
    p.add_argument('--titles', nargs='+', default=None, help='panel titles')
    p.add_argument('--templates', default='imagenet1k',
                   help='a prompt template file (one per line, {} for the word) or a '
                   'clip-benchmark key (default: imagenet1k)')
    p.add_argument('--last-block', default='plain',
                   choices=['plain', 'maskclip', 'sclip', 'clearclip'])
    p.add_argument('--threshold', type=float, default=0.0,
                   help='leave pixels whose best word has a lower probability blank')
    p.add_argument('--logit-scale', type=float, default=40.0)
    p.add_argument('--out', default='zero_shot_seg.png', help='PNG to write')
    p.add_argument('--panel-px', type=int, default=256)
    args = p.parse_args(argv)
    if len(args.words) < 2:
        p.error('give at least two words')
    if len(args.configs) != len(args.checkpoints):
        p.error(f'{len(args.configs)} configs for {len(args.checkpoints)} checkpoints')
    return args


def build(config, checkpoint, args):
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    import rils_mm  # noqa: F401
    from rils_mm.models.segmentors import ZeroShotSegmentor
    templates = args.templates
    if osp.isfile(templates):
        with open(templates) as f:
            templates = [t.strip() for t in f if t.strip()]
    model = Config.fromfile(config).model
    size = model.backbone.get('img_size', 224)
    size = size if isinstance(size, int) else size[0]
    seg = ZeroShotSegmentor(
        model.to_dict(), class_names=args.words, templates=templates,
        last_block=args.last_block, logit_scale=args.logit_scale,
        test_cfg=dict(mode='slide', crop_size=(size, size), stride=(size // 2, size // 2)))
    load_checkpoint(seg, checkpoint, map_location='cpu', strict=False)
    return seg.eval()


def main(argv=None):
    args = parse_args(argv)
    import mmcv

    from rils_mm.visualization import draw_word_segmentation, segment_words
    if not osp.isfile(args.image):
        raise FileNotFoundError(f'{args.image}: no such image file')
    bgr = mmcv.imread(args.image)
    titles = args.titles or [osp.basename(c) for c in args.checkpoints]
    results = []
    for config, ckpt, title in zip(args.configs, args.checkpoints, titles):
        probs = segment_words(build(config, ckpt, args), bgr)
        results.append((title, probs))
        share = probs.argmax(0).flatten().bincount(minlength=len(args.words))
        print(title + ': ' + ', '.join(f'{w} {100 * int(n) / share.sum():.0f}%'
                                       for w, n in zip(args.words, share)))
    draw_word_segmentation(bgr[..., ::-1], args.words, results, args.out,
                           threshold=args.threshold, panel_px=args.panel_px,
                           title=osp.basename(args.image))
    print(f'wrote {args.out}')
    return results


if __name__ == '__main__':
    main()
