-- name: image_scores
-- purpose: per-image scores of spaces at the image level (`semwh analyze image-scores`):
--   for each image, the concept centroid nearest to it (the mean of each concept's images,
--   its own image left out of its own concept's), whether that is its own concept
--   (correct), the margin (similarity to its own centroid minus the best other), its own
--   concept's rank among the centroids (1 = most similar; a tie counts against the image)
--   and its own similarity. is_current is false when the space's content changed after the
--   scores were computed (score it again).
-- param: space VARCHAR = NULL  only this space (NULL: every scored space)
-- param: similarity VARCHAR = NULL  only this similarity (NULL: both)
-- choices: similarity = pearson, cosine
-- columns: space, model, layer, depth_index, relative_depth, similarity, stimulus, image_id,
--   concept, n_images, n_concepts, nearest_concept, correct, margin, rank, own_similarity,
--   is_current, analysis_id
SELECT
    s.space,
    sp.model,
    sp.layer,
    sp.depth_index,
    sp.relative_depth,
    s.similarity,
    s.stimulus,
    s.image_id,
    s.concept,
    s.n_images,
    s.n_concepts,
    s.nearest_concept,
    s.correct,
    s.margin,
    s.rank,
    s.own_similarity,
    coalesce(sp.content_sha256 = s.space_sha256, false) AS is_current,
    s.analysis_id
FROM image_scores AS s
LEFT JOIN spaces AS sp ON sp.name = s.space
WHERE (CAST($space AS VARCHAR) IS NULL OR s.space = CAST($space AS VARCHAR))
    AND (CAST($similarity AS VARCHAR) IS NULL OR s.similarity = CAST($similarity AS VARCHAR))
ORDER BY s.space, s.similarity, s.stimulus
