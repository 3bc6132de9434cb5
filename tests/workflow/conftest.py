"""Fixtures for workflow tests."""

import pytest
from snakerun import copy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))
