"""Pretraining checkpoint (any method of this project) -> backbone-only checkpoint.

    python tools/model_converters/extract_backbone.py work_dirs/rils/epoch_25.pth rils_vitb16.pth
    python tools/model_converters/extract_backbone.py epoch_25.pth rils_vitb16.safetensors

The output holds the vision encoder's tensors named as inside the backbone module, so
mmpretrain / mmdet / mmseg configs load it with
``backbone=dict(type='mmpretrain.RILSViT', ..., init_cfg=dict(type='Pretrained',
checkpoint='rils_vitb16.pth'))`` (no prefix). ``.safetensors`` (by extension) is for tools
outside mmengine (mmengine's loader reads torch files); ``.pth`` otherwise.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)

import rils_mm  # noqa: E402,F401
from rils_mm.utils.model_convert import extract_backbone, load_state_dict_file, save_state_dict_file  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='pretraining checkpoint (.pth, or .safetensors)')
    p.add_argument('dst', help='output: .pth or .safetensors')
    p.add_argument('--prefix', default='backbone.', help="module prefix to keep")
    args = p.parse_args(argv)
    sd = extract_backbone(load_state_dict_file(args.src), args.prefix)
    save_state_dict_file(sd, args.dst, meta=dict(source=osp.basename(args.src),
                                                 converter='extract_backbone'))
    print(f'{len(sd)} backbone tensors -> {args.dst}')
    return sd


if __name__ == '__main__':
    main()
