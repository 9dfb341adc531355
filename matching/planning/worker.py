"""One extra search of `plan_routes`, in its own interpreter: `python -m matching.planning.worker
JOB` reads (data, deadline, seed, method, exchange folder) pickled by the parent and
prints the solution pickled."""

import pickle
import sys
from pathlib import Path

from matching.planning.solver import search_once

if __name__ == "__main__":
    data, deadline, seed, method, exchange = pickle.loads(Path(sys.argv[1]).read_bytes())
    sys.stdout.buffer.write(pickle.dumps(search_once(data, deadline, seed, method, exchange)))
