"""Write pipeline/data/imagenet_classes.tsv: the ImageNet-1k classes in standard order (tench first).

Source: the plain-text files inside the timm 1.0.31 wheel (Apache-2.0), which we read once and keep a
generated copy of; timm is never imported or installed. Run from the repository root:

    python scripts/make_imagenet_classes.py            # downloads the wheel with pip (no deps)
    python scripts/make_imagenet_classes.py WHEEL.whl  # or reads a wheel you already have

Output columns: index, wnid, name (first lemma), lemmas (all, comma-separated), definition.
"""
from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

INFO = "timm/data/_info/"
OUT = Path(__file__).resolve().parent.parent / "pipeline" / "data" / "imagenet_classes.tsv"


def read_tab_file(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            wheel = Path(argv[0])
        else:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "timm==1.0.31", "-d", tmp], check=True)
            wheel = next(Path(tmp).glob("timm-1.0.31-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            synsets = zf.read(INFO + "imagenet_synsets.txt").decode().split()
            lemmas = read_tab_file(zf.read(INFO + "imagenet_synset_to_lemma.txt").decode())
            definitions = read_tab_file(zf.read(INFO + "imagenet_synset_to_definition.txt").decode())
    assert len(synsets) == 1000 and synsets[0] == "n01440764", "unexpected synset list"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "wnid", "name", "lemmas", "definition"])
        for i, wnid in enumerate(synsets):
            all_lemmas = lemmas[wnid].strip()
            writer.writerow([i, wnid, all_lemmas.split(",")[0].strip(), all_lemmas, definitions[wnid].strip()])
    print(f"wrote {OUT} (1000 classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
