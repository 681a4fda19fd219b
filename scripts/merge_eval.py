"""Merge the rows of several `python -m nfsd_gs.eval` result folders into one table.

    python scripts/merge_eval.py OUT_DIR RESULT_DIR [RESULT_DIR ...] [--levers BASE]
                                 [--worst N [--worst-by KEY]]

Used when an evaluation was split over several processes or commands with
different prompt sets; writes OUT_DIR/results.json and results.md and prints the
per-variant table. With ``--levers BASE`` (issue 21's screening) it also writes
OUT_DIR/levers.md and levers.json (``nfsd_gs.eval.report.lever_rows``: the lever
table, with each variant's paired difference against the BASE variant) and prints
that table last. With ``--worst N`` (issues 21 and 22's strips of the worst prompts of
each) it also writes OUT_DIR/worst.png and worst.md: each variant's N worst runs by
``--worst-by`` (``nfsd_gs.eval.worst``; the strips are found in the RESULT_DIRs and the
folders merged into them). A RESULT_DIR without results.json (a process stopped before its
first run finished) is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nfsd_gs.eval import summarize, summary_table, write_results
from nfsd_gs.eval.report import lever_rows, lever_table
from nfsd_gs.eval.worst import WORST_BY, write_worst
from nfsd_gs.utils.io import write_json, write_text


def merge(sources):
    results = [json.loads((s / "results.json").read_text()) for s in sources]
    rows = [row for result in results for row in result["rows"]]
    definitions = {v["name"]: v for r in results for v in r["meta"]["variants"]}
    variants = list(dict.fromkeys([row["variant"] for row in rows] + list(definitions)))
    statuses = {result["meta"]["status"] for result in results}
    meta = {**results[0]["meta"], "status": "complete" if statuses == {"complete"} else
            "/".join(sorted(statuses)),
            "prompts": list(dict.fromkeys(row["prompt"] for row in rows)),
            "seeds": sorted({row.get("seed") for row in rows if row.get("seed") is not None}),
            "variants": list(definitions.values()),
            "merged_from": [str(s) for s in sources]}
    present = [v for v in variants if any(row["variant"] == v for row in rows)]
    return {"meta": meta, "summary": summarize(rows, present), "rows": rows}, variants


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/merge_eval.py")
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", type=Path, nargs="+")
    parser.add_argument("--levers", metavar="BASE", default=None,
                        help="also write levers.md/levers.json, differences against BASE")
    parser.add_argument("--worst", metavar="N", type=int, default=0,
                        help="also write worst.png/worst.md: each variant's N worst runs "
                             "(default 0: none)")
    parser.add_argument("--worst-by", choices=WORST_BY, default=WORST_BY[0],
                        help="ranking of --worst (default all_acc: the judge, then "
                             "sharpness / GT, then IoU)")
    args = parser.parse_args(argv)
    if args.worst < 0:
        parser.error(f"--worst {args.worst} must be >= 0")
    sources = [s for s in args.sources if (s / "results.json").is_file()]
    for skipped in sorted(set(args.sources) - set(sources)):
        print(f"note: {skipped} has no results.json; skipped", file=sys.stderr)
    if not sources:
        print("error: no results.json in any source folder", file=sys.stderr)
        return 2
    result, variants = merge(sources)
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(summary_table(result["summary"]))
    if args.levers is not None:
        entries = lever_rows(result["rows"], variants, base=args.levers)
        definitions = {v["name"]: " ".join(v["overrides"]) for v in result["meta"]["variants"]}
        legend = "\n".join(f"- `{name}`: `{definitions.get(name, '') or '-'}`" for name in variants)
        meta = result["meta"]
        write_text(args.out / "levers.md",
                   f"# Lever screening ({meta['status']})\n\nconfig `{meta['config']}`, "
                   f"overrides `{' '.join(meta['overrides']) or '-'}`, device {meta['device']}"
                   f"{' (' + meta['gpu'] + ')' if meta.get('gpu') else ''}, "
                   f"{len(meta['prompts'])} prompts x seeds {meta['seeds']}.\n\n{legend}\n\n"
                   f"{lever_table(entries)}\n")
        write_json(args.out / "levers.json", entries)
        print("\n" + lever_table(entries))
    if args.worst:
        png, _ = write_worst(args.out, result["rows"], args.worst, args.worst_by,
                             status=result["meta"]["status"])
        print(f"\nwrote {png} and worst.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
