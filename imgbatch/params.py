"""The parameters of every flow, defined once (docs/ARCHITECTURE.md, "One parameter model").

Each model is the flow's signature (Prefect builds the deployment form from it: descriptions,
`Literal` choices as dropdowns), the source of the CLI's options (cli/options.py reads the
fields), and what run.json records. Values are checked here, with no I/O; checks that need
the file system (the CSV exists, OUT is writable) are `imgbatch.preflight`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from imgbatch.compute.parallel import ExecutorKind
from imgbatch.errors import UsageError
from imgbatch.pixels.spec import ImageSpec, ResizeMode
from imgbatch.timeouts import READ_TIMEOUT

# The largest partition array (rows x S x S x 3 bytes) held in memory while it is computed.
MAX_PARTITION_BYTES = 4 << 30


def parse_partition_ids(text: str) -> list[int]:
    """'3,7' or '0-4,9' -> sorted unique ids."""
    ids: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, _, hi = part.partition("-")
            ids.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise UsageError(f"partitions must look like 3,7 or 0-4, got {text!r}") from None
    if not ids:
        raise UsageError("partitions names no partition")
    return sorted(ids)


def parse_background(text: str) -> tuple[int, int, int]:
    """'255,255,255' -> (255, 255, 255)."""
    parts = re.split(r"\s*,\s*", text.strip())
    if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise UsageError(f"background must be three integers 0-255 like 255,255,255, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def form_first(*names: str) -> Callable[[dict[str, Any]], None]:
    """A json_schema_extra that lists these fields first: the Prefect UI builds a deployment's
    run form in the schema's order, and a user fills in the paths before the options."""

    def reorder(schema: dict[str, Any]) -> None:
        fields = schema["properties"]
        schema["properties"] = {n: fields[n] for n in names} | {
            k: v for k, v in fields.items() if k not in names
        }

    return reorder


def absolute(path: str) -> str:
    """A local path made absolute; a URL (gs://...) as it is."""
    return path if "://" in path else os.path.abspath(path)


class Params(BaseModel):
    """Shared behaviour: strict field names, one-line errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def checked(cls, **values) -> Params:
        """Build from keyword values; a bad value is a UsageError naming the field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise UsageError(one_line(exc)) from None


def one_line(exc: ValidationError) -> str:
    """The first problem of a validation error, as `--field: what is wrong`."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown parameter"
    if not field:  # a check of several fields: its message names the options to change
        return msg
    return f"--{field.replace('_', '-')}: {msg}"


class ImageOptions(Params):
    """How rows become pixels, and how the work is cut and run (everything but the paths)."""

    column: str = Field("image_path", description="CSV column that names each row's image")
    size: Annotated[int, Field(gt=0, le=4096)] = Field(
        64, description="output side S: every image becomes S x S x 3 uint8"
    )
    resize_mode: ResizeMode = Field(
        "stretch",
        description="stretch to S x S (the notebook's way), center_crop a square, or pad "
        "the long side to S with the background colour",
    )
    background: tuple[
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
    ] = Field((255, 255, 255), description="R,G,B that transparent pixels are composited over")
    partition_size: Annotated[int, Field(gt=0)] = Field(
        1000, description="rows per partition: one Prefect task and one committed shard each"
    )
    partitions: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="only these partition ids (empty: all); used to rerun chosen ones"
    )
    workers: Annotated[int, Field(gt=0)] | None = Field(
        None, description="decode workers (empty: every core this process may use)"
    )
    executor: ExecutorKind = Field(
        "auto", description="decode on threads, processes, or auto (threads up to 4 workers)"
    )
    retries: Annotated[int, Field(ge=0, le=20)] = Field(
        3, description="Prefect retries of a partition that failed for a transient reason"
    )
    retry_delay_seconds: Annotated[float, Field(ge=0)] = Field(
        2.0, description="first retry delay; each further retry waits twice as long"
    )
    min_found: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5,
        description="stop before decoding when fewer than this fraction of the CSV's images "
        "exist (a wrong images root); 0 turns the check off",
    )
    overwrite: bool = Field(
        False, description="replace a result of a different CSV or parameters already in out"
    )
    dask_address: str | None = Field(
        None,
        description="run partitions on an existing Dask cluster (tcp://host:8786) via "
        "prefect-dask (empty: on this machine); workers is then the decode threads per Dask "
        "worker",
    )

    @field_validator("background", mode="before")
    @classmethod
    def _background_text(cls, value):
        return parse_background(value) if isinstance(value, str) else value

    @field_validator("partitions", mode="before")
    @classmethod
    def _partition_text(cls, value):
        if isinstance(value, str):
            return parse_partition_ids(value) if value.strip() else None
        return value or None

    @model_validator(mode="after")
    def _fits_in_memory(self) -> ImageOptions:
        need = self.partition_size * self.size * self.size * 3
        if need > MAX_PARTITION_BYTES:
            raise ValueError(
                f"{self.partition_size} rows of {self.size}x{self.size} images need "
                f"{need / 2**30:,.1f} GiB per partition (at most {MAX_PARTITION_BYTES >> 30} "
                "GiB): lower --size or --partition-size"
            )
        return self

    def spec(self) -> ImageSpec:
        """The parameters that decide pixels (part of every partition fingerprint)."""
        return ImageSpec(self.size, self.resize_mode, self.background)


class Destination(Params):
    """The CSV a run reads and the folder it writes: first in every form."""

    csv: str = Field(description="CSV file (or gs://BUCKET/OBJECT) with one row per image")
    out: str = Field(
        description="output folder (or gs://BUCKET/PREFIX): images.npy, index.parquet, run.json, "
        "preview.png"
    )


class ImagesRoot(Destination):
    images: str = Field(
        description="folder (or gs://BUCKET/PREFIX) that the CSV's image paths are relative to"
    )


class PreprocessParams(ImageOptions, ImagesRoot):
    """preprocess-images: CSV + images root -> OUT/images.npy and friends."""

    def absolute(self) -> PreprocessParams:
        """Local paths made absolute, so run.json and fingerprints do not depend on the cwd."""
        return self.model_copy(
            update={n: absolute(getattr(self, n)) for n in ("csv", "images", "out")}
        )


class Archives(Params):
    """Where archives come from and how hard wget tries (download-archives, prepare-dataset)."""

    urls: list[str] = Field(min_length=1, description="http(s) or ftp URLs of the archives")
    sha256: list[str] | None = Field(
        None, description="expected sha256 of each archive, in the order of urls (optional)"
    )
    tries: Annotated[int, Field(ge=1)] = Field(
        10, description="wget attempts inside one task run, each resuming where the last stopped"
    )
    read_timeout: Annotated[float, Field(gt=0)] = Field(
        READ_TIMEOUT, description="seconds of silence before wget drops the connection and resumes"
    )
    waitretry: Annotated[float, Field(ge=0)] = Field(
        10.0, description="wget waits 1 s, 2 s, ... up to this many seconds between attempts"
    )
    parallel: Annotated[int, Field(ge=1)] = Field(
        4, description="simultaneous downloads (and extractions)"
    )


class NetworkRetries(Params):
    """Prefect's retries of a network stage (each retry costs a listing or a resumed wget)."""

    retries: Annotated[int, Field(ge=0, le=20)] = Field(
        3, description="Prefect retries of a task that failed for a transient reason"
    )
    retry_delay_seconds: Annotated[float, Field(ge=0)] = Field(
        10.0, description="first retry delay; each further retry waits twice as long"
    )


class DownloadParams(Archives, NetworkRetries):
    """download-archives: URLs -> verified files in dest (and extracted trees)."""

    dest: str = Field(description="folder for the archives")
    extract: bool = Field(False, description="also extract each archive into extract_to")
    extract_to: str | None = Field(
        None, description="folder to extract into, as tar -xf ARCHIVE -C FOLDER (default: dest)"
    )


class PrepareParams(ImageOptions, Archives, Destination):
    """prepare-dataset: archives + CSV -> download, extract, optional upload, preprocess."""

    model_config = ConfigDict(
        json_schema_extra=form_first("urls", "csv", "work", "out", "upload_to")
    )

    work: str = Field(description="folder for WORK/archives and the extracted WORK/images")
    upload_to: str | None = Field(
        None, description="gs://BUCKET/PREFIX to copy WORK/images to and read the images from"
    )

    def preprocess(self, images: str) -> PreprocessParams:
        """The preprocess stage's parameters, reading from `images`."""
        keep = set(PreprocessParams.model_fields) - {"images"}
        return PreprocessParams(**self.model_dump(include=keep), images=images)

    def download(self) -> DownloadParams:
        """The download stage: archives into WORK/archives, extracted into WORK/images."""
        keep = set(Archives.model_fields)
        return DownloadParams(
            **self.model_dump(include=keep),
            dest=os.path.join(self.work, "archives"),
            extract=True,
            extract_to=os.path.join(self.work, "images"),
            retries=self.retries,
            retry_delay_seconds=self.retry_delay_seconds,
        )

    def upload(self, src_dir: str) -> UploadParams:
        """The upload stage: `src_dir` to upload_to, with this run's retries."""
        return UploadParams(
            src_dir=src_dir,
            dest=self.upload_to,
            retries=self.retries,
            retry_delay_seconds=self.retry_delay_seconds,
        )


class UploadParams(NetworkRetries):
    """upload-tree: a local folder -> gs://BUCKET/PREFIX, gsutil-style, checked by crc32c."""

    src_dir: str = Field(description="local folder to upload (every regular file under it)")
    dest: str = Field(description="gs://BUCKET/PREFIX to copy it to")
    workers: Annotated[int, Field(ge=1, le=256)] = Field(8, description="parallel uploads")
    object_attempts: Annotated[int, Field(ge=1, le=50)] = Field(
        5, description="attempts per object inside one task run, before the task fails"
    )
    object_initial_wait: Annotated[float, Field(ge=0)] = Field(
        1.0, description="seconds before an object's second attempt; doubles each attempt"
    )
    object_max_wait: Annotated[float, Field(ge=0)] = Field(
        30.0, description="longest wait between two attempts at one object"
    )
    object_client_deadline: Annotated[float, Field(gt=0)] = Field(
        60.0, description="seconds the storage client may spend retrying within one attempt"
    )
    object_timeout: Annotated[float, Field(gt=0)] = Field(
        READ_TIMEOUT,
        description="seconds of silence before a request to the storage server is dropped",
    )

    def object_retry(self) -> dict:
        """The per-object retry settings, as imgbatch.storage.gcs_client.RetryPolicy's fields."""
        return {
            name.removeprefix("object_"): getattr(self, name)
            for name in type(self).model_fields
            if name.startswith("object_")
        }


class StatsParams(Params):
    """image-stats: exact per-channel mean and std of OUT/images.npy."""

    out: str = Field(description="output folder of a finished preprocess run")
    normalize: bool = Field(False, description="also write OUT/images_f32.npy = (x - mean) / std")
