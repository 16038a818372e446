"""Our image-text checkpoints <-> open_clip's ``CLIP`` state-dict layout.

    # ours -> open_clip (.pth or .safetensors by extension)
    python tools/model_converters/open_clip_convert.py to-open-clip CONFIG ours.pth oc.safetensors
    # open_clip -> ours (the decoder of RILS is not part of open_clip: left as initialised)
    python tools/model_converters/open_clip_convert.py from-open-clip CONFIG oc.bin ours.pth

CONFIG is our model config; an open_clip model of the matching architecture is
``rils_mm.utils.model_convert.build_open_clip_model(MODELS.build(cfg.model))`` and gives the
same image and text embeddings (see the conversion notes in that module).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

setup_tool(__name__)

import rils_mm  # noqa: E402,F401
from rils_mm.utils.model_convert import (  # noqa: E402
    from_open_clip,
    load_state_dict_file,
    save_state_dict_file,
    to_open_clip,
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('direction', choices=['to-open-clip', 'from-open-clip'])
    p.add_argument('config', help='our model config (for qv_bias)')
    p.add_argument('src')
    p.add_argument('dst')
    args = p.parse_args(argv)
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    sd = load_state_dict_file(args.src)
    if args.direction == 'to-open-clip':
        out = to_open_clip(sd)
    else:
        out = from_open_clip(sd, qv_bias=cfg.model.backbone.get('qv_bias', True))
    save_state_dict_file(out, args.dst, meta=dict(source=osp.basename(args.src),
                                                  converter=args.direction))
    print(f'{len(out)} tensors -> {args.dst}')
    return out


if __name__ == '__main__':
    main()
