"""The names of everything imgbatch writes under OUT, in one place (README, "Outputs")."""

IMAGES = "images.npy"  # uint8 (N, S, S, 3), row i is CSV row i
INDEX = "index.parquet"  # one row per CSV row: status, error, source size, partition
RUN = "run.json"  # parameters, counts, sha256 of the others: written last, the set's record
PREVIEW = "preview.png"  # contact sheet
NORMALIZED = "images_f32.npy"  # written by `imgbatch stats` from images.npy: stale when it changes
OUTPUT_FORMAT = "imgbatch-output/1"  # run["format"]: this folder's outputs are imgbatch's
PLAN_FILE = "plan.parquet"  # the run's rows, one row group per partition
SHARDS_DIR = "shards"  # part-NNNNN.{npy,parquet,done.json}
JOURNAL = ".publish.json"  # an unfinished publish, finished or undone by the next run
LOCK_NAME = ".imgbatch.lock"  # the one writer's lock


def images_digest(run: dict) -> str:
    """images.npy's digest as run.json records it, for one line: its sha256 where the array
    passed through the machine that assembled it, else (composed on gs://) its crc32c."""
    if digest := run.get("images_sha256"):
        return f"sha256 {digest[:16]}..."
    return f"crc32c {run['images_crc32c']}"
