"""The layering contract over the real import graph, and the checker against made-up graphs.

xbar < mapping < correctnet; xbar never imports torch; mapping never imports correctnet;
correctnet's subpackages import downwards only; no import circle (``tests/layering.py``).
"""

import importlib
from pathlib import Path

import pytest

from layering import CORRECTNET_RANKS, cycles, import_graph, imports_of, violations

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT)


def test_the_project_keeps_its_layers(graph):
    assert "correctnet.study.pipeline" in graph and "xbar.kernels" in graph
    assert violations(graph) == []


def test_the_project_has_no_import_circle(graph):
    assert cycles(graph) == []


def test_every_correctnet_part_has_a_rank(graph):
    parts = {m.split(".")[1] for m in graph if m.startswith("correctnet.")}
    assert parts <= set(CORRECTNET_RANKS), parts - set(CORRECTNET_RANKS)


def test_lazy_names_of_every_subpackage_resolve():
    for part in ("workloads", "training", "compensation", "search", "sweep", "study"):
        package = importlib.import_module(f"correctnet.{part}")
        for name in package.__all__:
            assert getattr(package, name) is not None, f"correctnet.{part}.{name}"
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            package.nope  # noqa: B018


# ------------------------------------------------------------ the checker on synthetic graphs
def test_a_lower_package_importing_a_higher_one_is_reported():
    bad = {"mapping.layers": {"correctnet.workloads.models"}, "xbar.crossbar": {"mapping"}}
    found = violations(bad)
    assert any("mapping.layers imports correctnet.workloads.models" in v for v in found)
    assert any("xbar.crossbar imports mapping: xbar is below mapping" in v for v in found)


def test_xbar_importing_torch_is_reported():
    assert violations({"xbar.kernels": {"numpy", "torch.nn"}}) == [
        "xbar.kernels imports torch.nn: xbar never imports torch"]
    assert violations({"mapping.layers": {"torch", "numpy", "xbar"}}) == []


def test_correctnet_parts_import_downwards_only():
    assert violations({"correctnet.study.stages": {"correctnet.search.placement",
                                                   "correctnet.training.train", "mapping"}}) == []
    up = violations({"correctnet.sweep.point": {"correctnet.commands.simulate"}})
    assert up == ["correctnet.sweep.point imports correctnet.commands.simulate: correctnet.sweep "
                  "(rank 3) may not import correctnet.commands (rank 6)"]
    sideways = violations({"correctnet.training.train": {"correctnet.compensation.modules"}})
    assert len(sideways) == 1 and "may not import correctnet.compensation" in sideways[0]
    unranked = violations({"correctnet.study.stages": {"correctnet.hardware"}})
    assert unranked == ["correctnet.study.stages imports correctnet.hardware: "
                        "correctnet.hardware has no rank"]


def test_import_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"p.x": {"p.y"}, "p.y": {"p.x", "os"}}) == [["p.x", "p.y"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_from_source_including_local_and_relative_ones():
    src = ("import os\nfrom . import sibling\nfrom ..other import thing\n"
           "def f():\n    from correctnet.study import pipeline\n"
           "if False:\n    import torch\n")
    known = {"pkg.sub.sibling", "correctnet.study.pipeline"}
    assert imports_of(src, "pkg.sub.mod", False, known) == {
        "os", "pkg.sub.sibling", "pkg.other", "correctnet.study.pipeline", "torch"}
