"""The README, the manual and the config READMEs say only what is true of the tree.

* every repository path (``configs/…``, ``tools/…``, ``rils_mm/…``, ``tests/…``, …) named in a
  code block or inline code exists, and every dotted ``rils_mm.…`` name imports;
* every ``--flag`` shown for a ``tools/*.py`` command is accepted by that tool's ``--help``;
* every ``metafile.yml`` names existing configs and READMEs, lists every config of its folder,
  and quotes the paper's numbers as ``rils_mm/evaluation/paper_results.py`` has them.

The Sphinx build itself (``-W``: broken references, missing files, unknown directives) runs
in ``tools/run_tests.sh``.
"""
import glob
import importlib
import os.path as osp
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ROOTS = ('configs', 'tools', 'rils_mm', 'tests', 'requirements', 'docs', '.ci')
# Launchers whose extra arguments go to another tool.
FORWARDS = {'tools/dist_train.sh': 'tools/train.py', 'tools/slurm_train.sh': 'tools/train.py',
            'tools/quickstart.sh': 'tools/quickstart.py'}
FENCE = re.compile(r'^(`{3,})([^\n`]*)\n(.*?)^\1[ \t]*$', re.M | re.S)
INLINE = re.compile(r'(?<!`)`([^`\n]+)`(?!`)')
PATH = re.compile(r'(?<![\w./-])((?:%s)/[\w./{},*<>…-]*)' % '|'.join(re.escape(r) for r in ROOTS))
DOTTED = re.compile(r'(?<![\w.])(rils_mm(?:\.\w+)+)')


def markdown_files():
    files = [osp.join(ROOT, 'README.md')]
    files += glob.glob(osp.join(ROOT, 'docs', 'en', '**', '*.md'), recursive=True)
    files += glob.glob(osp.join(ROOT, 'configs', '**', 'README.md'), recursive=True)
    return sorted(f for f in files if '_build' not in f and '_autosummary' not in f)


def split_markdown(text):
    """(code blocks as (info, body), inline code spans) of a Markdown text."""
    blocks = [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text)]
    prose = FENCE.sub('', text)
    return blocks, INLINE.findall(prose)


def expand_braces(path):
    """``a{b,c}d`` -> [``abd``, ``acd``] (shell brace expansion of comma lists)."""
    m = re.search(r'\{([^{}]*,[^{}]*)\}', path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(',')
            for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def named_paths(snippet):
    """Concrete repository paths in a snippet; placeholders (``<set>``, ``*``) are skipped."""
    for raw in PATH.findall(snippet):
        raw = raw.rstrip('.,;:)')
        if any(c in raw for c in '<>*…') or '..' in raw or '_build' in raw:
            continue
        yield from expand_braces(raw)


def test_split_markdown_and_paths_find_what_they_should():
    text = ('Use `configs/rils/x.py` and `rils_mm.models`.\n\n```bash\n'
            'python tools/train.py configs/a_{b,c}.py --resume  # `not inline`\n```\n')
    blocks, inline = split_markdown(text)
    cmd = 'python tools/train.py configs/a_{b,c}.py --resume  # `not inline`\n'
    assert blocks == [('bash', cmd)]
    assert inline == ['configs/rils/x.py', 'rils_mm.models']
    assert list(named_paths(blocks[0][1])) == ['tools/train.py', 'configs/a_b.py', 'configs/a_c.py']
    assert list(named_paths('see configs/benchmarks/zero_shot/<set>.py and data/x')) == []


def _all_snippets():
    for path in markdown_files():
        blocks, inline = split_markdown(open(path, encoding='utf-8').read())
        rel = osp.relpath(path, ROOT)
        for info, body in blocks:
            if info.startswith('{') and info not in ('{code-block}',):
                continue  # MyST directives (toctree, include, eval-rst)
            yield rel, 'block', info, body
        for span in inline:
            yield rel, 'inline', '', span


def test_every_named_path_exists():
    missing = []
    for rel, kind, info, snippet in _all_snippets():
        if kind == 'block' and info == 'text':
            continue  # printed output, not commands
        for p in named_paths(snippet):
            if not osp.exists(osp.join(ROOT, p)):
                missing.append(f'{rel}: {p}')
    assert not missing, 'paths named in the docs that do not exist:\n' + '\n'.join(missing)


def _resolves(dotted):
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_rils_mm_name_imports():
    bad = sorted({f'{rel}: {name}' for rel, _, _, snippet in _all_snippets()
                  for name in DOTTED.findall(snippet) if not _resolves(name)})
    assert not bad, 'rils_mm names in the docs that do not resolve:\n' + '\n'.join(bad)


def commands(body):
    """Shell commands of a code block: continuations joined, comments dropped."""
    body = re.sub(r'\\\n', ' ', body)
    for line in body.splitlines():
        for part in re.split(r'&&|\|\||;|\|', line):
            try:
                tokens = shlex.split(part, comments=True)
            except ValueError:
                continue
            if tokens:
                yield tokens


def tool_flags(tokens):
    """(tool path, its first positional argument, the --flags given to it) of a command."""
    for i, tok in enumerate(tokens):
        tool = FORWARDS.get(tok, tok)
        if re.fullmatch(r'tools/[\w/]+\.py', tool):
            rest = tokens[i + 1:]
            first = next((t for t in rest if not t.startswith('-')), None)
            flags = sorted({t.split('=')[0] for t in rest
                            if re.fullmatch(r'--[a-z][\w-]*(=.*)?', t)})
            return tool, first, flags
    return None


def test_commands_parse_into_tool_and_flags():
    block = ('PYTHONPATH=x python tools/benchmark_train.py CFG --compare B \\\n'
             '    --batch-size 8 --aligned-ratio=0.5  # a comment --not-a-flag\n'
             'tools/dist_train.sh configs/x.py 8 --cfg-options a=1 && echo done\n')
    got = [tool_flags(t) for t in commands(block)]
    assert got[0] == ('tools/benchmark_train.py', 'CFG',
                      ['--aligned-ratio', '--batch-size', '--compare'])
    assert got[1] == ('tools/train.py', 'configs/x.py', ['--cfg-options'])
    assert got[2] is None


@lru_cache(maxsize=None)
def help_text(tool, sub=None):
    cmd = [sys.executable, osp.join(ROOT, tool)] + ([sub] if sub else []) + ['--help']
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f'{" ".join(cmd)} failed:\n{out.stderr[-2000:]}'
    return out.stdout


@pytest.mark.slow
def test_every_tool_flag_shown_is_accepted():
    shown = []  # (doc, tool, first positional, flags)
    for rel, kind, info, body in _all_snippets():
        if kind != 'block' or info == 'text':
            continue
        for tokens in commands(body):
            found = tool_flags(tokens)
            if found and osp.exists(osp.join(ROOT, found[0])):
                shown.append((rel,) + found)
    # Each --help starts the stack (seconds): ask each tool once, two at a time.
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(help_text, sorted({tool for _, tool, _, _ in shown})))
    wrong = []
    for rel, tool, first, flags in shown:
        text = help_text(tool)
        choices = re.search(r'\{([\w,-]+)\}', text)
        if first and choices and first in choices.group(1).split(','):
            text = help_text(tool, first)  # a subcommand's own flags
        for flag in flags:
            if not re.search(r'(?<![\w-])%s(?![\w-])' % re.escape(flag), text):
                wrong.append(f'{rel}: {tool} {flag}')
    assert not wrong, 'flags shown in the docs that the tool does not accept:\n' + '\n'.join(wrong)


def test_readme_is_a_short_front_door():
    lines = open(osp.join(ROOT, 'README.md'), encoding='utf-8').read().splitlines()
    assert len(lines) <= 250, f'README.md has {len(lines)} lines; guides belong in docs/en'
    blocks, _ = split_markdown('\n'.join(lines) + '\n')
    quick = [b for info, b in blocks if 'tools/quickstart.sh' in b]
    assert quick and 'tools/run_tests.sh' in quick[0], 'the two quick-start commands'
    assert quick[0].count('\n') == 2, 'exactly two quick-start commands'
    assert open(osp.join(ROOT, '.ci', 'run')).read().count('tools/run_tests.sh') == 1


# ------------------------------------------------------------------ metafiles vs the paper

def paper_lookup():
    """(source table, paper row, task, dataset) -> the paper's number."""
    from rils_mm.evaluation import paper_results as P
    zs_lin_ft = ('Zero-shot Classification', 'Linear Probing', 'Fine-tuning')
    out = {}
    for row, vals in P.TABLE6.items():
        out[('Table 6', row, 'Zero-shot Classification', 'ImageNet-1k')] = vals[
            P.TABLE6_COLUMNS.index('imagenet')]
    for row, (lin, ft) in P.TABLE1.items():
        out[('Table 1', row, 'Linear Probing', 'ImageNet-1k')] = lin
        out[('Table 1', row, 'Fine-tuning', 'ImageNet-1k')] = ft
    for row, (lin, ft) in P.TABLE1_L50M.items():
        out[('Table 1', row + ' L-50M', 'Linear Probing', 'ImageNet-1k')] = lin
        out[('Table 1', row + ' L-50M', 'Fine-tuning', 'ImageNet-1k')] = ft
    for ds, name in (('coco', 'COCO'), ('lvis', 'LVIS v1')):
        for row, (box, mask) in P.TABLE2[ds].items():
            out[('Table 2', row, 'Object Detection', name)] = box
            out[('Table 2', row, 'Instance Segmentation', name)] = mask
    for row, miou in P.TABLE3.items():
        out[('Table 3', row, 'Semantic Segmentation', 'ADE20K')] = miou
    for row, aps in P.TABLE5.items():
        for ratio, ap in zip(P.TABLE5_RATIOS, aps):
            out[('Table 5', row, 'Object Detection', f'COCO, {ratio}% low-shot')] = ap
    tables = [('Table 9', P.TABLE9), ('Table 10', P.TABLE10)]
    tables += [(f'Table 11{x}', {f'{name}={k}': v for k, v in P.TABLE11[name].items()})
               for x, name in zip('abc', ('mask ratio', 'decoder blocks', 'lambda1:lambda2'))]
    for source, table in tables:
        for row, vals in table.items():
            for task, v in zip(zs_lin_ft, vals):
                if v is not None:
                    out[(source, row, task, 'ImageNet-1k')] = v
    return out


METAFILES = sorted(glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml')))


def test_there_is_a_metafile_per_method_folder():
    folders = {osp.basename(osp.dirname(m)) for m in METAFILES}
    assert {'rils', 'clip', 'mae', 'mae_clip', 'slip', 'two_stage', 'milan', 'mmdet',
            'mmseg'} <= folders


@pytest.mark.parametrize('metafile', METAFILES, ids=lambda p: osp.basename(osp.dirname(p)))
def test_metafile_matches_the_tree_and_the_paper(metafile):
    meta = yaml.safe_load(open(metafile, encoding='utf-8'))
    folder = osp.dirname(metafile)
    for coll in meta['Collections']:
        assert osp.isfile(osp.join(ROOT, coll['README'])), coll['README']
        assert coll['Paper']['URL'].startswith('https://arxiv.org/abs/')
    names = {c['Name'] for c in meta['Collections']}
    listed = set()
    lookup = paper_lookup()
    for model in meta['Models']:
        assert model['In Collection'] in names, model['Name']
        cfg = model['Config']
        assert osp.isfile(osp.join(ROOT, cfg)), f'{metafile}: {cfg}'
        assert osp.splitext(osp.basename(cfg))[0] == model['Name']
        listed.add(osp.normpath(osp.join(ROOT, cfg)))
        row = model['Metadata'].get('Paper Row')
        for result in model['Results'] or []:
            (metric, value), = result['Metrics'].items()
            key = (result['Source'], row, result['Task'], result['Dataset'])
            if model['Metadata']['Training Data'] == 'L-50M':
                key = (key[0], f'{row} L-50M') + key[2:]
            assert key in lookup, f'{model["Name"]}: no paper number for {key}'
            assert value == lookup[key], f'{model["Name"]} {key}: {value} != {lookup[key]}'
    configs = {osp.normpath(p) for p in glob.glob(osp.join(folder, '*.py'))}
    assert configs == listed, f'configs without a metafile entry: {sorted(configs - listed)}'
    readme = open(osp.join(folder, 'README.md'), encoding='utf-8').read()
    for model in meta['Models']:
        assert model['Config'] in readme, f'{folder}/README.md does not list {model["Config"]}'
