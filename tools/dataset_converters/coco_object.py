"""Write COCO-Object labels from COCO-Stuff-164k (the zero-shot segmentation set of
GroupViT / SCLIP: 80 thing classes as 1..80, everything else background 0).

    python tools/dataset_converters/coco_object.py data/coco_stuff164k --split val2017

reads the raw COCO-Stuff maps ``annotations/<split>/<name>.png`` (COCO id - 1, 255
unlabelled; mmseg's coco_stuff164k layout before its own conversion) and writes
``annotations/<split>/<name>_instanceTrainIds.png`` beside them, which
``configs/benchmarks/zero_shot_seg/coco_object.py`` (``COCOObjectDataset``) reads.
"""
import argparse
import glob
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', help='the coco_stuff164k folder (images/, annotations/)')
    p.add_argument('--split', default='val2017', help='annotations sub-folder')
    args = p.parse_args(argv)
    import numpy as np
    from PIL import Image

    from rils_mm.datasets.seg_benchmarks import coco_object_labels
    files = [f for f in sorted(glob.glob(osp.join(args.root, 'annotations', args.split, '*.png')))
             if 'TrainIds' not in f]
    if not files:
        raise FileNotFoundError(f'no raw label maps in {args.root}/annotations/{args.split}/')
    for path in files:
        out = path[:-len('.png')] + '_instanceTrainIds.png'
        Image.fromarray(coco_object_labels(np.asarray(Image.open(path)))).save(out)
    print(f'{len(files)} COCO-Object label maps written to {osp.dirname(files[0])}')


if __name__ == '__main__':
    main()
