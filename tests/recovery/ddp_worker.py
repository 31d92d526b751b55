"""Run under torchrun by test_ddp.py: `prunetune recover` on every rank, then each rank writes a digest
of its final weights so the test can check the ranks agree. Usage: ddp_worker.py DIGEST_DIR CLI_ARGS..."""

import hashlib
import os
import sys
from pathlib import Path

from prunetune.cli import build_parser
from prunetune.commands import recover as cmd

if __name__ == "__main__":
    digest_dir = Path(sys.argv[1])
    result = cmd.execute(build_parser().parse_args(sys.argv[2:]))
    h = hashlib.sha256()
    for name, t in sorted(result.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    rank = os.environ["RANK"]
    (digest_dir / f"rank{rank}.txt").write_text(
        f"{h.hexdigest()} {result.steps} {result.info['world_size']}\n"
    )
