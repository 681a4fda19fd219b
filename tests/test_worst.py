"""The worst runs of each variant (nfsd_gs.eval.worst): the ranking on rows with known
numbers, the sheet from tiny strips of known colours, and scripts/merge_eval.py --worst on
two result folders."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from nfsd_gs.errors import ConfigError
from nfsd_gs.eval import worst
from nfsd_gs.eval.runner import strip_path

ROOT = Path(__file__).resolve().parent.parent


def row(prompt, variant="nfsd@7.5", seed=0, acc=1.0, sharp=1.0, iou=0.9, de=10.0,
        speckle=0.05, truth_speckle=0.05, error=None, strip=None):
    """A result row as the evaluation writes it (truth's sharpness 2.0: ``sharp`` is the
    ratio); an ``error`` row carries only what a failed run's row has."""
    base = {"variant": variant, "prompt": prompt, "seed": seed, "error": error,
            "strip": strip or f"outputs/gone/part0/strips/{variant}/{prompt}_seed{seed}.png"}
    if error:
        return base
    judged = ["red cone"] * round(8 * acc) + ["blue cube"] * (8 - round(8 * acc))
    ours = {"shape_acc": acc, "colour_acc": acc, "both_acc": acc, "all_acc": acc,
            "judged": judged, "saturation": 0.8, "sharpness": 2.0 * sharp, "coverage": 0.1,
            "speckle": speckle, "iou": iou, "colour_de": de}
    truth = {"shape_acc": 1.0, "colour_acc": 1.0, "both_acc": 1.0, "all_acc": 1.0,
             "judged": ["red cone"] * 8, "saturation": 0.8, "sharpness": 2.0,
             "coverage": 0.1, "speckle": truth_speckle}
    return {**base, "ours": ours, "truth": truth, "train_s": 1.0, "steps_per_s": 2.0}


def names(rows):
    return [r["prompt"] for r in rows]


RANKED = [row("fine", sharp=0.9, iou=0.9), row("judged wrong", acc=0.5, sharp=1.0, iou=0.95),
          row("blurred", sharp=0.4, iou=0.95), row("misshapen", sharp=0.9, iou=0.5),
          row("failed", error="RuntimeError: boom"),
          row("off colour", de=30.0, speckle=0.30, truth_speckle=0.29),
          row("speckled", de=20.0, speckle=0.20, truth_speckle=0.0)]


def test_default_ranking_is_errors_then_judge_then_sharpness_then_iou():
    (picked,) = worst.worst_runs(RANKED, len(RANKED)).values()
    # "fine" and "misshapen" tie on the judge and the sharpness: IoU decides; the two
    # remaining runs tie on everything (sharpness 1, IoU 0.9): prompt order.
    assert names(picked) == ["failed", "judged wrong", "blurred", "misshapen", "fine",
                             "off colour", "speckled"]
    assert names(worst.worst_runs(RANKED, 2)["nfsd@7.5"]) == ["failed", "judged wrong"]


@pytest.mark.parametrize("by, expected", [
    ("iou", ["failed", "misshapen", "fine", "off colour", "speckled", "judged wrong", "blurred"]),
    ("sharpness", ["failed", "blurred", "misshapen", "fine", "judged wrong", "off colour",
                   "speckled"]),
    ("colour_de", ["failed", "off colour", "speckled", "judged wrong", "blurred", "misshapen",
                   "fine"]),
    # ours minus the truth's: 0.20 over a clean truth is worse than 0.30 over 0.29
    ("speckle", ["failed", "speckled", "off colour", "judged wrong", "blurred", "misshapen",
                 "fine"])])
def test_each_ranking_key_then_the_default_order(by, expected):
    assert names(worst.worst_runs(RANKED, len(RANKED), by)["nfsd@7.5"]) == expected


def test_ties_go_by_prompt_then_seed_and_missing_metrics_last():
    rows = [row("b", seed=1), row("b", seed=0), row("a", seed=2), row("c", iou=None)]
    assert [(r["prompt"], r["seed"]) for r in worst.worst_runs(rows, 4, "iou")["nfsd@7.5"]] == [
        ("a", 2), ("b", 0), ("b", 1), ("c", 0)]


def test_variants_keep_their_order_and_their_own_worst():
    rows = [row("x", "nerf", iou=0.5), row("y", "gs", iou=0.7), row("z", "nerf", iou=0.6),
            row("w", "gs", iou=0.6)]
    picked = worst.worst_runs(rows, 1, "iou")
    assert list(picked) == ["nerf", "gs"] and [names(v) for v in picked.values()] == [["x"], ["w"]]


def test_labels_show_the_numbers_in_ranking_order():
    judged = row("judged wrong", acc=0.5, sharp=0.61, iou=0.82)
    assert worst.worst_label(judged) == "judge 4/8 · sharpness 0.61 GT · IoU 0.82"
    assert worst.worst_label(judged, "iou") == "IoU 0.82 · judge 4/8 · sharpness 0.61 GT"
    assert worst.worst_label(RANKED[-1], "speckle").startswith("speckle 0.200 (GT 0.000) · ")
    assert worst.worst_label(RANKED[-1], "colour_de").startswith("Delta E 20.0 · judge 8/8")
    assert worst.worst_label(RANKED[4]) == "error: RuntimeError: boom"


def test_bad_count_or_key_is_one_error_naming_it():
    with pytest.raises(ConfigError, match="--worst 0"):
        worst.worst_runs(RANKED, 0)
    with pytest.raises(ConfigError, match="'ssim'"):
        worst.worst_runs([], 3, "ssim")


# ---------------------------------------------------------------------------- the sheet


def fake_strip(folder, r, colour, size=(40, 10)):
    """A one-colour strip where the evaluation in ``folder`` would have written it."""
    path = strip_path(folder, r["variant"], r["prompt"], r["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def pixels_of(image, colour):
    """(count, leftmost x) of ``colour`` in ``image``."""
    xs = [i % image.width for i, p in enumerate(image.getdata()) if p == colour]
    return len(xs), min(xs, default=None)


COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 0, 250), (0, 250, 250)]


def test_the_sheet_holds_the_worst_strips_at_their_size_worst_first(tmp_path):
    folder = tmp_path / "part0"  # the rows' stored paths name .../part0/strips/...
    rows = [row("a red cone", iou=0.9), row("a blue cube", iou=0.5), row("a cyan cube", iou=0.7),
            row("a pink sphere", error="TrainingDiverged: nan"),
            row("a green torus", "nerf", iou=0.6), row("a red torus", "nerf", iou=0.8)]
    for r, colour in zip([rows[0], rows[1], rows[2], rows[4], rows[5]], COLOURS):
        fake_strip(folder, r, colour)
    png, md = worst.write_worst(tmp_path / "out", rows, 3, "iou", folders=[folder])
    sheet = Image.open(png).convert("RGB")
    count = {c: pixels_of(sheet, c) for c in COLOURS}
    # nfsd@7.5: the error (no strip), then IoU 0.5 and 0.7; 0.9 is fourth: left out.
    assert count[COLOURS[0]] == (0, None)
    for c in COLOURS[1:]:
        assert count[c][0] == 40 * 10  # pasted whole, not scaled
    assert count[COLOURS[1]][1] < count[COLOURS[2]][1]  # worst leftmost
    assert count[COLOURS[3]][1] < count[COLOURS[4]][1]
    text = md.read_text()
    assert "![The worst runs of each variant](worst.png)" in text
    assert "1. a pink sphere, seed 0: error: TrainingDiverged: nan (no strip)" in text
    assert "2. a blue cube, seed 0: IoU 0.50 · judge 8/8 · sharpness 1.00 GT (`" in text
    assert text.index("## nfsd@7.5 (the worst 3 of 4 runs)") < text.index("## nerf (")
    assert "a red cone" not in text


def test_a_sheet_of_real_size_strips_stays_their_size(tmp_path):
    """3 strips of 8 views of 64 px per variant: three strips wide, no upscaling."""
    rows = [row(f"a red {s}", v, iou=0.5 + k / 10) for v in ("gs", "nerf")
            for k, s in enumerate(("cone", "cube", "torus"))]
    for r in rows:
        fake_strip(tmp_path, r, (90, 90, 90), size=(512, 128))
    png, _ = worst.write_worst(tmp_path, rows, 3)
    width, height = Image.open(png).size
    assert width == 2 * worst.MARGIN + 3 * 512 + 2 * worst.GAP  # labels fit above a strip
    assert 2 * 128 < height < 2 * 128 + 200


def test_strips_are_found_in_the_folder_the_stored_path_names_before_the_stored_path(tmp_path):
    r = row("a red cone")
    r["strip"] = str(strip_path(tmp_path / "stale" / "part1", r["variant"], r["prompt"], 0))
    stale = Path(r["strip"])
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"another run's")
    part0, part1 = fake_strip(tmp_path / "part0", r, COLOURS[0]), \
        fake_strip(tmp_path / "part1", r, COLOURS[1])
    assert worst.find_strip(r, [tmp_path / "part0", tmp_path / "part1"]) == part1
    assert worst.find_strip(r, [tmp_path / "part0"]) == part0
    assert worst.find_strip(r, [tmp_path / "nowhere"]) == stale
    assert worst.find_strip({**r, "error": "boom"}, [tmp_path / "part1"]) is None


def test_a_missing_or_unreadable_strip_is_named_not_drawn(tmp_path):
    rows = [row("a red cone", iou=0.5), row("a blue cube", iou=0.6), row("a cyan cube", iou=0.7)]
    fake_strip(tmp_path, rows[0], COLOURS[0])
    strip_path(tmp_path, "nfsd@7.5", "a blue cube", 0).write_bytes(b"not a png")
    png, md = worst.write_worst(tmp_path, rows, 3, "iou")
    assert pixels_of(Image.open(png).convert("RGB"), COLOURS[0])[0] == 400
    lines = md.read_text().splitlines()[-3:]
    assert lines[0].endswith("(`strips/nfsd_7_5/a_red_cone_seed0.png`)")
    assert lines[1].endswith("(strip not found)") and lines[2].endswith("(strip not found)")


def test_strip_folders_follow_merged_folders_moved_beside_them(tmp_path):
    for name, merged in (("merged", ["outputs/testbed/part0", "outputs/testbed/part1"]),
                         ("part0", []), ("part1", [])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"meta": {"merged_from": merged}, "rows": []}))
    assert worst.strip_folders(tmp_path / "merged") == [
        tmp_path / "merged", tmp_path / "part0", tmp_path / "part1"]


# ---------------------------------------------------------------------------- merge_eval


def result_folder(folder, rows):
    meta = {"status": "complete", "config": "default", "overrides": [], "split": "solid",
            "views": 8, "resolution": 64, "device": "cpu", "judge": "shipped",
            "variants": [{"name": v, "config": None, "overrides": []}
                         for v in dict.fromkeys(r["variant"] for r in rows)]}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"meta": meta, "summary": [], "rows": rows}))


def test_merge_eval_writes_the_worst_of_both_folders(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("merge_eval", ROOT / "scripts/merge_eval.py")
    merge_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_eval)
    first = [row("a red cone", sharp=0.5), row("a blue cube", sharp=0.9)]
    second = [row("a cyan cube", sharp=0.3), row("a green torus", error="RuntimeError: x")]
    result_folder(tmp_path / "part0", first)
    result_folder(tmp_path / "part1", second)
    for r, colour in zip(first + second[:1], COLOURS):
        fake_strip(tmp_path / ("part0" if r in first else "part1"), r, colour)
    out = tmp_path / "merged"
    assert merge_eval.main([str(out), str(tmp_path / "part0"), str(tmp_path / "part1"),
                            "--worst", "3", "--worst-by", "sharpness"]) == 0
    assert "worst.png" in capsys.readouterr().err
    lines = [s for s in (out / "worst.md").read_text().splitlines() if s[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3  # the worst 3 of 4: the error, then sharpness 0.3, 0.5 (not 0.9)
    assert lines[0] == "1. a green torus, seed 0: error: RuntimeError: x (no strip)"
    assert "part1/strips/nfsd_7_5/a_cyan_cube_seed0.png" in lines[1]
    assert lines[1].startswith("2. a cyan cube, seed 0: sharpness 0.30 GT · judge 8/8 · IoU 0.90")
    assert lines[2].startswith("3. a red cone, seed 0: sharpness 0.50 GT")
    assert "part0/strips/nfsd_7_5/a_red_cone_seed0.png" in lines[2]
    sheet = Image.open(out / "worst.png").convert("RGB")
    assert [pixels_of(sheet, c)[0] for c in COLOURS[:3]] == [400, 0, 400]
    assert merge_eval.main([str(tmp_path / "plain"), str(tmp_path / "part0")]) == 0
    assert not (tmp_path / "plain" / "worst.png").exists()  # --worst 0: none
