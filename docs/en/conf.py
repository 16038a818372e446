"""Sphinx configuration of the rils-mm manual (MyST Markdown, built with ``-W``)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)

project = 'rils-mm'
author = 'rils-mm contributors'
copyright = '2026, rils-mm contributors'
with open(os.path.join(ROOT, 'rils_mm', 'version.py')) as f:
    release = f.read().split("'")[1]
version = release

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
]
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns = ['_build']
autosummary_generate = True
autosummary_imported_members = False

# Headings get GitHub-style anchors, so `page.md#a-heading` links are checked by -W.
myst_heading_anchors = 4
myst_enable_extensions = ['dollarmath', 'colon_fence']

# The API reference is generated from the docstrings; the paper's equation numbers live there.
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
autodoc_default_options = {'members': True, 'show-inheritance': True,
                           'ignore-module-all': True}
# torch's own docstrings (e.g. autograd.Function.forward) point at torch's manual.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Nothing contacts the network while building: no intersphinx, no link checks.

html_theme = 'furo'
html_title = f'rils-mm {release}'


def _skip_borrowed(app, what, name, obj, skip, options):
    """Methods a class takes from mmseg/mmengine keep their docs there."""
    module = getattr(obj, '__module__', None) or ''
    if callable(obj) and module and not module.startswith('rils_mm'):
        return True
    return skip


def setup(app):
    app.connect('autodoc-skip-member', _skip_borrowed)
