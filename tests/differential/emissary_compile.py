"""Run Emissary's own Python compiler on YAML files, offline.

Runs inside the venv that run.py builds, with PYTHONPATH=<checkout>/python/ambassador/src.
It compiles the way Emissary's unit tests do (python/tests/src/tests/utils.py and
ambassador.compile.Compile): ResourceFetcher.parse_yaml(k8s=True) -> Config.load_all -> IR (with
a NullSecretHandler whose cache directory, where the Secrets of the input are written as PEM
files for Envoy, is `emissary-secrets/` beside OUT) -> EnvoyConfig.generate.

Usage: python emissary_compile.py IN1.yaml OUT1.json [IN2.yaml OUT2.json ...]
Each OUT is {"errors": {...}, "config": <EnvoyConfig.as_dict()>} or {"exception": "..."}.
"""

import json
import logging
import os
import sys
import traceback


def main(argv):
    logging.basicConfig(level=logging.CRITICAL)
    logger = logging.getLogger("ambassador")
    logger.setLevel(logging.CRITICAL)
    from ambassador.compile import Compile
    from ambassador.utils import NullSecretHandler

    pairs = list(zip(argv[0::2], argv[1::2]))
    for src, dst in pairs:
        try:
            with open(src) as f:
                text = f.read()
            # Secrets in the input are read by the IR and written as PEM files under cache_dir,
            # which Envoy then reads: a directory that outlives this process, next to OUT
            cache = os.path.join(os.path.dirname(os.path.abspath(dst)), "emissary-secrets")
            os.makedirs(cache, exist_ok=True)
            secret_handler = NullSecretHandler(logger, None, cache, "0")
            r = Compile(logger, text, k8s=True, secret_handler=secret_handler)
            ir = r["ir"]
            out = {"errors": {k: [str(e) for e in v] for k, v in (ir.aconf.errors or {}).items()}}
            if "xds" in r:
                out["config"] = r["xds"].as_dict()
            else:
                out["exception"] = "no xds generated"
        except Exception:
            out = {"exception": traceback.format_exc()}
        with open(dst, "w") as f:
            json.dump(out, f, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
