"""Archives in the seed's layout for tests: each archive's members carry their category folder,
and the CSV names category/file, as the Shopee data does."""

from __future__ import annotations

from pathlib import Path

from imgbatch.sampledata import samples


def category_archives(folder: Path, rows: int) -> tuple[Path, list[Path]]:
    """beauty_image.tar.gz and fashion_image.tar.gz, members under their category folder,
    plus one corrupt file and one missing row; the CSV names category/file."""
    src, paths = folder / "src", []
    for i, cat in enumerate(("beauty_image", "fashion_image")):
        paths += [f"{cat}/{p}" for p in samples.write_tree(src / cat, rows // 2, seed=i)]
    samples.write_if_changed(src / "beauty_image/bad.jpg", b"<html>404</html>")
    paths += ["beauty_image/bad.jpg", "fashion_image/gone.jpg"]
    archives = [folder / f"{cat}.tar.gz" for cat in ("beauty_image", "fashion_image")]
    for a in archives:
        a.write_bytes(samples.tar_gz(src, a.name.removesuffix(".tar.gz")))
    return samples.write_csv(folder / "train.csv", paths), archives
