"""Merge the rows of several `python -m nfsd_gs.eval` result folders into one table.

    python scripts/merge_eval.py OUT_DIR RESULT_DIR [RESULT_DIR ...]

Used when an evaluation was split over several processes or commands with
different prompt sets; writes OUT_DIR/results.json and results.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nfsd_gs.eval import summarize, summary_table, write_results


def main(argv) -> int:
    out, sources = Path(argv[0]), [Path(a) for a in argv[1:]]
    results = [json.loads((s / "results.json").read_text()) for s in sources]
    rows = [row for result in results for row in result["rows"]]
    variants = list(dict.fromkeys(row["variant"] for row in rows))
    statuses = {result["meta"]["status"] for result in results}
    meta = {**results[0]["meta"], "status": "complete" if statuses == {"complete"} else
            "/".join(sorted(statuses)),
            "prompts": list(dict.fromkeys(row["prompt"] for row in rows)),
            "seeds": sorted({row.get("seed") for row in rows if row.get("seed") is not None}),
            "variants": list({v["name"]: v for r in results for v in r["meta"]["variants"]}.values()),
            "merged_from": [str(s) for s in sources]}
    result = {"meta": meta, "summary": summarize(rows, variants), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, result)
    print(summary_table(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
