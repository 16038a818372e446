"""Export a checkpoint of this project for timm, open_clip, transformers or mmpretrain.

    python tools/model_converters/export_model.py timm CONFIG epoch_25.pth vit.safetensors
    python tools/model_converters/export_model.py backbone CONFIG epoch_25.pth bb.safetensors
    python tools/model_converters/export_model.py open-clip CONFIG epoch_25.pth oc_dir
    python tools/model_converters/export_model.py hf-clip CONFIG epoch_25.pth hf_dir --dtype bf16

The logic is ``rils_mm.utils.export.convert.export_checkpoint``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)

from rils_mm.utils.export.convert import EXPORT_TARGETS, export_checkpoint  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('target', choices=sorted(EXPORT_TARGETS))
    p.add_argument('config', help='the model config the checkpoint was trained with')
    p.add_argument('src', help='checkpoint (.pth or .safetensors)')
    p.add_argument('dst', help='output file (timm, backbone: .safetensors or .pth) or '
                   'folder (open-clip, hf-clip)')
    p.add_argument('--dtype', choices=['fp32', 'bf16'], default='fp32',
                   help='dtype of the written floating-point tensors')
    p.add_argument('--tower', choices=['auto', 'timm', 'native'], default='auto',
                   help='open-clip only: the vision tower (auto: timm where it exists)')
    args = p.parse_args(argv)
    meta = export_checkpoint(args.target, args.config, args.src, args.dst, args.dtype,
                             args.tower)
    print(json.dumps(meta, indent=2))
    return meta


if __name__ == '__main__':
    main()
