"""Every assignment in solutions/ has its pipeline test module, and nothing else does."""
import importlib
from pathlib import Path

from .pipeline import REPO, PipelineTests


def test_every_assignment_has_pipeline_tests():
    in_solutions = sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    tested = []
    for path in sorted(Path(__file__).parent.glob("test_a*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        classes = [c for c in vars(module).values()
                   if isinstance(c, type) and issubclass(c, PipelineTests) and c is not PipelineTests]
        assert [c.assignment for c in classes] == [path.stem[len("test_"):]], path.name
        tested.append(path.stem[len("test_"):])
    assert in_solutions == tested
