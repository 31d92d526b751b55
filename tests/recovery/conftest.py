import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The build machine's 2 cores are shared by several jobs; one thread avoids OpenMP spin contention
    (measured: a 30-step tiny run takes 35 s with 2 threads under load, 2 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
