-- name: recovery_by_layer
-- purpose: 1 vs 2 recovery per layer: of the images a model misclassifies (top-1 concept
--   differs from the true one, both with word vectors), the share whose true concept the
--   layer recovers against the word space, with its binomial p (one-sided, vs 0.5), FDR p,
--   the visual variant and the mean rank of the true concept. Newest result per
--   (layer space, word space).
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- columns: model, layer, depth_index, relative_depth, word_space, is_random, n_images,
--   n_success, recovery_rate, p_value, p_fdr, n_visual, visual_rate, visual_p_value,
--   mean_rank_true, n_concepts
WITH r AS (
    SELECT *, row_number() OVER (
        PARTITION BY space_a, space_b ORDER BY created_at DESC, result_id DESC) AS rn
    FROM results_recovery
)
SELECT
    r.model,
    r.layer,
    s.depth_index,
    s.relative_depth,
    r.space_b AS word_space,
    r.model LIKE '%-random' AS is_random,
    r.n_images,
    r.n_success,
    r.accuracy AS recovery_rate,
    r.p_value,
    r.p_fdr,
    r.n_visual,
    r.visual_accuracy AS visual_rate,
    r.visual_p_value,
    r.mean_rank_true,
    r.n_concepts
FROM r
LEFT JOIN spaces AS s ON s.name = r.space_a
WHERE r.rn = 1
    AND (CAST($model AS VARCHAR) IS NULL OR r.model = CAST($model AS VARCHAR))
    AND (CAST($word_space AS VARCHAR) IS NULL OR r.space_b = CAST($word_space AS VARCHAR))
ORDER BY word_space, r.model, s.depth_index
