"""Ingest research inputs into the warehouse: concepts, images, word vectors, external spaces.

Every ingest validates its whole input before the first write, records its source (content
hash, options, version) and is idempotent.
"""

from semwh.ingest.concepts import ConceptIngestReport, ingest_concepts
from semwh.ingest.formats import FORMATS, WordVectors, read_word_vectors
from semwh.ingest.images import ImageIngestReport, ingest_images
from semwh.ingest.rdms import RDMIngestReport, ingest_rdm
from semwh.ingest.spaces import SpaceIngestReport, ingest_space
from semwh.ingest.wordnet import open_wordnet
from semwh.ingest.words import MULTIWORD, WordIngestReport, ingest_words, load_vocabulary

__all__ = [
    "RDMIngestReport",
    "FORMATS",
    "MULTIWORD",
    "ConceptIngestReport",
    "ImageIngestReport",
    "SpaceIngestReport",
    "WordIngestReport",
    "WordVectors",
    "ingest_concepts",
    "ingest_images",
    "ingest_rdm",
    "ingest_space",
    "ingest_words",
    "load_vocabulary",
    "open_wordnet",
    "read_word_vectors",
]
