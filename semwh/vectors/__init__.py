"""The one Parquet reader/writer/registrar of vectors (see :mod:`semwh.vectors.store`)."""

from semwh.vectors.store import (
    ImageVectors,
    SpaceVectors,
    VectorFileInfo,
    clean_tmp,
    content_sha256,
    get_space,
    image_shard_relpath,
    list_spaces,
    load_image_vectors,
    load_space,
    read_file_metadata,
    register_vector_file,
    save_space,
    space_relpath,
    write_vector_file,
)

__all__ = [
    "ImageVectors",
    "SpaceVectors",
    "VectorFileInfo",
    "clean_tmp",
    "content_sha256",
    "get_space",
    "image_shard_relpath",
    "list_spaces",
    "load_image_vectors",
    "load_space",
    "read_file_metadata",
    "register_vector_file",
    "save_space",
    "space_relpath",
    "write_vector_file",
]
