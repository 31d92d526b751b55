import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads were
# measured ~20x slower than one (thread contention); CI has 2 cores.
torch.set_num_threads(1)

# every registered family runs the family-parametrised tests: dense ones the dense invariants
# (`family`), mixture-of-experts ones the MoE invariants (`moe_family`, tests/pruning/test_surgery_moe.py)
from prunetune.models import DENSE_FAMILIES, MOE_FAMILIES  # noqa: E402


@pytest.fixture(params=DENSE_FAMILIES)
def family(request):
    return request.param


@pytest.fixture(params=MOE_FAMILIES)
def moe_family(request):
    return request.param


def run_cli(*argv):
    """Run the CLI in-process; returns (exit code, stdout+stderr captured by capsys in the caller)."""
    from prunetune.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors
        return e.code
