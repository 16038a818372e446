"""Step 3: natural-language captions describing a scene."""
from typing import Dict, Sequence, Tuple

import numpy as np

from .scene import Scene

#: CLIP-style zero-shot prompt templates; ``{}`` is replaced by a class name.
TEMPLATES: Tuple[str, ...] = (
    'a photo of a {}.',
    'a picture of a {}.',
    'an image of a {}.',
    'a drawing of a {}.',
    'a rendering of a {}.',
    'there is a {} in the image.',
    'a {} on a textured background.',
    'a close-up photo of the {}.',
)

#: Words a caption may use for each shape: (singular, plural) pairs, the canonical
#: word first. Synonyms are used rarely so that class names stay well aligned.
SHAPE_WORDS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    'circle': (('circle', 'circles'), ('disc', 'discs')),
    'square': (('square', 'squares'), ('block', 'blocks')),
    'triangle': (('triangle', 'triangles'), ),
    'cross': (('cross', 'crosses'), ('plus sign', 'plus signs')),
}

_SYNONYM_PROB = 0.12

_COUNT_WORDS = {1: (('a', 0.7), ('one', 0.15), ('a single', 0.15)),
                2: (('two', 1.0), ),
                3: (('three', 1.0), )}
_POSITION_PHRASES = {
    'top left': ('in the top left corner', 'at the top left', 'in the upper left'),
    'top': ('at the top', 'near the top', 'in the upper part of the image'),
    'top right': ('in the top right corner', 'at the top right', 'in the upper right'),
    'left': ('on the left', 'on the left side', 'at the left'),
    'centre': ('in the centre', 'in the middle', 'in the center of the image'),
    'right': ('on the right', 'on the right side', 'at the right'),
    'bottom left': ('in the bottom left corner', 'at the bottom left',
                    'in the lower left'),
    'bottom': ('at the bottom', 'near the bottom', 'in the lower part of the image'),
    'bottom right': ('in the bottom right corner', 'at the bottom right',
                     'in the lower right'),
}
_SCATTER_PHRASES = ('scattered across the image', 'spread around the image',
                    'in different places')
_BACKGROUND_WORDS = {
    'plain': ('plain', 'flat', 'uniform'),
    'noise': ('noisy', 'grainy', 'speckled'),
    'stripes': ('striped', 'stripy'),
    'gradient': ('gradient', 'smoothly shaded'),
    'checker': ('checkered', 'checkerboard'),
}


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return 'an' if word[:1].lower() in 'aeiou' else 'a'


def _shape_word(shape: str, plural: bool, rng: np.random.Generator) -> str:
    words = SHAPE_WORDS[shape]
    pair = words[0] if len(words) == 1 or rng.random() >= _SYNONYM_PROB \
        else _pick(rng, words[1:])
    return pair[1] if plural else pair[0]


def _noun_phrase(colour, shape, count, scale, rng, small=False):
    """E.g. 'two red circles', 'a large blue square', 'a circle coloured red'."""
    plural = count > 1
    noun = _shape_word(shape, plural, rng)
    adj = ''
    if small:
        adj = _pick(rng, ('small ', 'tiny ', 'little '))
    elif count == 1 and scale > 0.43 and rng.random() < 0.5:
        adj = _pick(rng, ('large ', 'big '))
    elif rng.random() < 0.1:
        adj = 'bright '
    style = rng.random()
    if count == 1:
        det = 'a' if small else _pick_weighted(_COUNT_WORDS[1], rng)
        if det == 'a':
            det = _article(adj or colour)
        if style < 0.75 or small:
            return f'{det} {adj}{colour} {noun}'
        if style < 0.9:
            return f'{_article(adj or noun)} {adj}{noun} coloured {colour}'
        return f'{_article(adj or noun)} {adj}{noun} in {colour}'
    det = _pick_weighted(_COUNT_WORDS[count], rng)
    if style < 0.75:
        return f'{det} {adj}{colour} {noun}'
    if style < 0.9:
        return f'{det} {adj}{noun} coloured {colour}'
    return f'{det} {adj}{colour}-coloured {noun}'


def _pick_weighted(options, rng):
    words = [w for w, _ in options]
    probs = np.array([p for _, p in options], dtype=np.float64)
    return words[int(rng.choice(len(words), p=probs / probs.sum()))]


def make_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Write a varied natural-language caption for a scene.

    The caption always names the dominant colour and a word for the dominant
    shape (see :data:`SHAPE_WORDS`), with the count in words; it mentions the
    position, the distractor and the background some of the time.

    Args:
        scene (Scene): The scene.
        rng (np.random.Generator): Source of randomness.

    Returns:
        str: The caption.
    """
    dom = [o for o in scene.objects if o.is_dominant]
    np_ = _noun_phrase(scene.colour, scene.shape, scene.count, dom[0].scale, rng)
    plural = scene.count > 1
    be = 'are' if plural else 'is'
    if scene.position is not None:
        pos = _pick(rng, _POSITION_PHRASES[scene.position]) if rng.random() < 0.7 \
            else ''
    else:
        pos = _pick(rng, _SCATTER_PHRASES) if rng.random() < 0.3 else ''
    dist = d_np = ''
    if scene.distractors and rng.random() < 0.6:
        d = scene.distractors[0]
        d_np = _noun_phrase(d.colour, d.shape, 1, d.scale, rng, small=True)
        dist = _pick(rng, ('and {}', 'next to {}', 'with {} nearby',
                           'beside {}')).format(d_np)
    bg = ''
    if rng.random() < 0.4:
        word = _pick(rng, _BACKGROUND_WORDS[scene.background.kind])
        bg = _pick(rng, ('on a {} background', 'against a {} backdrop',
                         'over a {} background')).format(word)

    def j(*parts):
        return ' '.join(p for p in parts if p)

    template = int(rng.integers(10))
    period = True
    if template == 0:
        text, period = j(np_, pos, dist, bg), rng.random() < 0.5
    elif template == 1:
        text = j('a photo of', np_, pos, dist, bg)
    elif template == 2:
        text = j('there', be, np_, pos, dist, bg)
    elif template == 3:
        text = j('an image showing', np_, pos, dist, bg)
    elif template == 4:
        text = j('a picture of', np_, pos, dist, bg)
    elif template == 5:
        text = j(np_, be, 'visible', pos, bg)
        if dist:
            text = j(text + ',', 'together with', d_np)
    elif template == 6:
        text = j('a simple drawing of', np_, pos, dist, bg)
    elif template == 7:
        if pos:
            text = j(pos + ',', 'there', be, np_, dist, bg)
        else:
            text = j('this image contains', np_, dist, bg)
    elif template == 8:
        text = j('a synthetic image with', np_, pos, dist, bg)
    else:
        text = j('a rendering of', np_, pos, dist, bg)
    if period:
        text += '.'
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text
