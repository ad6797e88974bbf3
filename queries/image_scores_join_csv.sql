-- name: image_scores_join_csv
-- purpose: per-image layer scores joined with a lab's per-image CSV file keyed by stimulus
--   (reaction times, ratings, memorability, a subject's responses, ...): for every image
--   of the file scored in a space (`semwh analyze image-scores`), the space's model, layer
--   and depth, whether the image's nearest concept centroid is its own concept (correct),
--   the margin, its own concept's rank (1 = most similar) and own similarity (see the
--   query image_scores), followed by the file's own columns. Images of the file that no
--   space scored (unknown stimuli; the only image of their concept) have no row.
-- param: path VARCHAR = required  the csv file (header row); must have a column named stimulus
-- param: space VARCHAR = NULL  only this space (NULL: every scored space)
-- param: model VARCHAR = NULL  only the layers of this model (NULL: every model)
-- param: similarity VARCHAR = 'pearson'  the similarity of the scores, pearson or cosine
-- choices: similarity = pearson, cosine
-- columns: stimulus, image_id, concept, space, model, layer, depth_index, relative_depth,
--   similarity, nearest_concept, correct, margin, rank, own_similarity, n_images,
--   n_concepts, is_current, then every column of the file except stimulus
WITH ext AS (
    SELECT * FROM read_csv_auto(CAST($path AS VARCHAR))
)
SELECT
    s.stimulus,
    s.image_id,
    s.concept,
    s.space,
    sp.model,
    sp.layer,
    sp.depth_index,
    sp.relative_depth,
    s.similarity,
    s.nearest_concept,
    s.correct,
    s.margin,
    s.rank,
    s.own_similarity,
    s.n_images,
    s.n_concepts,
    coalesce(sp.content_sha256 = s.space_sha256, false) AS is_current,
    ext.* EXCLUDE (stimulus)
FROM ext
-- Stimulus ids compare as normalised text (Unicode NFC, surrounding spaces trimmed), as
-- per-image files are matched at ingest: a file stem in decomposed Unicode is the same id.
JOIN image_scores AS s
    ON nfc_normalize(trim(s.stimulus)) = nfc_normalize(trim(CAST(ext.stimulus AS VARCHAR)))
LEFT JOIN spaces AS sp ON sp.name = s.space
WHERE s.similarity = CAST($similarity AS VARCHAR)
    AND (CAST($space AS VARCHAR) IS NULL OR s.space = CAST($space AS VARCHAR))
    AND (CAST($model AS VARCHAR) IS NULL OR sp.model = CAST($model AS VARCHAR))
ORDER BY s.space, s.stimulus
