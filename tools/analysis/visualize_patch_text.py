"""Show what a trained RILS reads into each patch of an image (paper Eq. 8).

    python tools/analysis/visualize_patch_text.py CONFIG CHECKPOINT IMAGE \
        --phrases "a red circle" "a blue square" "a green triangle" [--out patch_text.png]

For every patch: its probability over the phrases from the intact view (target
``p``, tau_1) as one coloured overlay per phrase, the masked input, and the winning
phrase per patch in the intact and in the decoded masked view (prediction ``q``,
tau_2). Uses the config's test pipeline to load the image and the model's own data
preprocessor, so the picture shows exactly what the model saw.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # tools/
from project_env import setup_tool  # noqa: E402

ROOT = setup_tool(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('image', help='image file')
    parser.add_argument('--phrases', nargs='+', required=True,
                        help='two or more phrases to compare, e.g. "a red circle"')
    parser.add_argument('--out', default='patch_text.png', help='PNG to write')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random mask')
    parser.add_argument('--panel-px', type=int, default=192, help='panel side in pixels')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def load_model(config: str, checkpoint: str, device: str = 'cpu'):
    """Build the config's model and load the checkpoint's weights."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    import rils_mm  # noqa: F401  (registers the components, safe checkpoint loading)
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return cfg, model.to(device).eval()


def load_image(cfg, image: str, model):
    """The image through the config's test pipeline and the model's data
    preprocessor. Returns (normalised (1, 3, H, W) tensor, (H, W, 3) RGB uint8)."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    if not osp.isfile(image):
        raise FileNotFoundError(f'{image}: no such image file')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader or 'pipeline' not in loader.get('dataset', {}):
        raise KeyError(f'{cfg.filename}: needs test_dataloader.dataset.pipeline '
                       '(LoadImageFromFile ... PackInputs) to load the image')
    data = Compose(loader.dataset.pipeline)(dict(img_path=image))
    batch = model.data_preprocessor(dict(inputs=[data['inputs']]), False)
    rgb = data['inputs'].permute(1, 2, 0).numpy()[..., ::-1].copy()  # BGR -> RGB
    return batch['inputs'], rgb


def main(argv=None):
    args = parse_args(argv)
    from rils_mm.visualization import draw_patch_text, patch_text_probs

    cfg, model = load_model(args.config, args.checkpoint, args.device)
    inputs, rgb = load_image(cfg, args.image, model)
    result = patch_text_probs(model, inputs, args.phrases, seed=args.seed)
    draw_patch_text(rgb, args.phrases, result, args.out, panel_px=args.panel_px,
                    title=f'{osp.basename(args.image)} - {osp.basename(args.checkpoint)}')
    wins = result['p'].argmax(1).bincount(minlength=len(args.phrases)).tolist()
    for phrase, n in zip(args.phrases, wins):
        print(f'{n:4d} patches: "{phrase}"')
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
