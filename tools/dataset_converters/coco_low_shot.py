"""Write the low-shot COCO annotation files of paper Table 5.

    python tools/dataset_converters/coco_low_shot.py \
        data/coco/annotations/instances_train2017.json --out-dir data/coco/annotations

writes ``instances_train2017_{1,2,5,10,20,50}pct_seed0.json`` next to the original:
a seeded selection of that fraction of the annotated training images that keeps
every category it can (see :mod:`rils_mm.datasets.coco_low_shot`). The configs
``configs/mmdet/vitdet_mask_rcnn_rils_vitb16_coco_lowshot_*pct_12e.py`` read them.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)

from rils_mm.datasets.coco_low_shot import LOW_SHOT_FRACTIONS, write_low_shot_files  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('ann_file', help='COCO instances file, e.g. instances_train2017.json')
    p.add_argument('--out-dir', default=None, help='defaults to the folder of ann_file')
    p.add_argument('--fractions', type=float, nargs='+', default=list(LOW_SHOT_FRACTIONS),
                   help='fractions of the annotated images (default: 1 2 5 10 20 50 %%)')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    out_dir = args.out_dir or osp.dirname(osp.abspath(args.ann_file))
    for path in write_low_shot_files(args.ann_file, out_dir, args.fractions, args.seed):
        print(path)


if __name__ == '__main__':
    main()
