"""Schemathesis hooks for tests/security/test_sec_schemathesis.py: path ids are drawn from the
real rows of the seeded city (as well as generated values), so the run reaches past the 404s."""

import json
import os

import schemathesis
from hypothesis import strategies as st

REAL_IDS: dict[str, list[str]] = json.loads(os.environ.get("GASDISPATCH_FUZZ_IDS", "{}"))


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):  # noqa: ANN001, ANN201
    known = [name for name in (path_parameters or {}) if REAL_IDS.get(name)]
    if not known:
        return st.just(path_parameters)
    real = st.fixed_dictionaries({name: st.sampled_from([*REAL_IDS[name], path_parameters[name]]) for name in known})
    return real.map(lambda chosen: {**path_parameters, **chosen})
