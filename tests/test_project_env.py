"""The README's commands find the project's environment (.venv) when run by an
interpreter that lacks the stack: Python tools re-execute themselves under
.venv/bin/python, shell tools pick it as $PYTHON."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

PROBE = '''import sys
from project_env import setup_tool  # the start-up of every tool
setup_tool(__name__)
import mmengine
print('RAN', sys.executable, mmengine.__version__, sys.argv[1:])
'''


@pytest.fixture(scope='module')
def bare_python(tmp_path_factory):
    """A Python with nothing installed (a fresh venv without pip)."""
    venv = tmp_path_factory.mktemp('bare') / 'venv'
    subprocess.run([sys._base_executable, '-m', 'venv', '--without-pip', str(venv)],
                   check=True)
    python = str(venv / 'bin' / 'python')
    lacks = subprocess.run([python, '-c', 'import mmengine'], env=_env(),
                           capture_output=True)
    assert lacks.returncode != 0, 'the bare interpreter must not have mmengine'
    return python


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'RILS_MM_REEXEC', 'PYTHON')}
    env.update(extra)
    return env


def _project(tmp_path, venv_target=None):
    """A copy of the tools' helpers in a fake repository; .venv/bin/python runs
    ``venv_target`` (the real environment's interpreter) when given."""
    tools = tmp_path / 'tools'
    tools.mkdir()
    shutil.copy(osp.join(ROOT, 'tools', 'project_env.py'), tools)
    shutil.copy(osp.join(ROOT, 'tools', 'project_python.sh'), tools)
    (tools / 'probe.py').write_text(PROBE)
    if venv_target:
        bindir = tmp_path / '.venv' / 'bin'
        bindir.mkdir(parents=True)
        wrapper = bindir / 'python'
        wrapper.write_text(f'#!/bin/sh\nexec "{venv_target}" "$@"\n')
        wrapper.chmod(0o755)
    return tmp_path


def test_python_tool_reexecs_under_project_venv(tmp_path, bare_python):
    root = _project(tmp_path, venv_target=sys.executable)
    out = subprocess.run([bare_python, str(root / 'tools' / 'probe.py'), '--x', '1'],
                         env=_env(), capture_output=True, text=True, cwd=str(root))
    assert out.returncode == 0, out.stderr
    # ran to the end under the interpreter with the stack, arguments intact
    assert out.stdout.startswith('RAN '), out.stdout
    assert "['--x', '1']" in out.stdout
    assert 'lacks torch, mmengine, mmpretrain: re-running under .venv/bin/python' in out.stderr


def test_python_tool_with_the_stack_runs_as_is(tmp_path):
    root = _project(tmp_path, venv_target=sys.executable)
    out = subprocess.run([sys.executable, str(root / 'tools' / 'probe.py')],
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == sys.executable
    assert 're-running' not in out.stderr


def test_python_tool_without_any_environment_says_what_to_run(tmp_path, bare_python):
    root = _project(tmp_path)  # no .venv
    out = subprocess.run([bare_python, str(root / 'tools' / 'probe.py')],
                         env=_env(), capture_output=True, text=True)
    assert out.returncode == 1
    assert 'RAN' not in out.stdout
    assert 'cannot import torch, mmengine, mmpretrain' in out.stderr
    assert 'bash tools/quickstart.sh' in out.stderr


def test_broken_project_venv_does_not_loop(tmp_path, bare_python):
    root = _project(tmp_path, venv_target=bare_python)  # .venv lacks the stack too
    out = subprocess.run([bare_python, str(root / 'tools' / 'probe.py')],
                         env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count('re-running under') == 1
    assert 'cannot import' in out.stderr


def _shell_python(root, path_dir, **extra):
    script = f'set -euo pipefail; source "{root}/tools/project_python.sh"; echo "$PYTHON"'
    env = _env(PATH=f'{path_dir}:/usr/bin:/bin', **extra)
    return subprocess.run(['bash', '-c', script], env=env, capture_output=True, text=True)


def test_shell_tools_pick_project_venv(tmp_path, bare_python):
    (tmp_path / 'repo').mkdir()
    root = _project(tmp_path / 'repo', venv_target=sys.executable)
    bare_bin = tmp_path / 'bare_bin'
    bare_bin.mkdir()
    os.symlink(bare_python, bare_bin / 'python')
    good_bin = tmp_path / 'good_bin'
    good_bin.mkdir()
    (good_bin / 'python').write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (good_bin / 'python').chmod(0o755)

    out = _shell_python(root, bare_bin)  # `python` lacks the stack: .venv's
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(root / '.venv' / 'bin' / 'python')
    out = _shell_python(root, good_bin)  # `python` has it: used as it is
    assert out.stdout.strip() == 'python', out.stderr
    out = _shell_python(root, bare_bin, PYTHON='/opt/my/python')  # explicit wins
    assert out.stdout.strip() == '/opt/my/python'
    shutil.rmtree(root / '.venv')
    out = _shell_python(root, bare_bin)  # nothing usable: a clear error
    assert out.returncode == 1
    assert 'bash tools/quickstart.sh' in out.stderr


def test_readme_tools_use_the_helpers():
    # every Python entry point starts through the one preamble (re-exec under .venv)
    tools = glob.glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True)
    tools = [t for t in tools if osp.basename(t) != 'project_env.py']
    assert len(tools) > 20
    for tool in tools:
        with open(tool) as f:
            assert 'setup_tool(__name__' in f.read(), osp.relpath(tool, ROOT)
    for tool in ('dist_train.sh', 'slurm_train.sh'):
        with open(osp.join(ROOT, 'tools', tool)) as f:
            text = f.read()
        assert 'tools/project_python.sh' in text and '"$PYTHON"' in text, tool
