"""Shared test set-up."""
import itertools

import pytest
from mmengine.registry import DefaultScope

_names = itertools.count()


def _enter_mmpretrain_scope() -> None:
    # mmengine resolves registry builds in the most recently created DefaultScope.
    DefaultScope.get_instance(f'rils-mm-test-{next(_names)}', scope_name='mmpretrain')


@pytest.fixture(autouse=True, scope='module')
def _mmpretrain_scope_for_module_fixtures():
    """Module-scoped fixtures (built before any per-test fixture) start in 'mmpretrain'."""
    _enter_mmpretrain_scope()
    yield


@pytest.fixture(autouse=True)
def _mmpretrain_default_scope():
    """Each test starts in the project's default scope, 'mmpretrain' (every config sets it).

    A test that builds an mmdet / mmseg / mmengine-scoped Runner makes that scope the
    current one, which would otherwise change where the next test's registries look.
    """
    _enter_mmpretrain_scope()
    yield
