-- name: recovery_by_layer
-- purpose: 1 vs 2 recovery per layer: of the images a model misclassifies (top-1 concept
--   differs from the true one, both with word vectors), the share whose true concept the
--   layer recovers against the word space, with its binomial p (one-sided, vs 0.5), the FDR
--   p of the newest finished sweep that lists the result (NULL when no sweep does: a single
--   `analyze recovery` reports uncorrected p only), the visual variant and the mean rank of
--   the true concept. Per (layer space, word space) the newest result computed from the
--   spaces' current content; results of superseded inputs are never shown.
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- columns: model, layer, depth_index, relative_depth, word_space, is_random, n_images,
--   n_success, recovery_rate, p_value, p_fdr, sweep_id, n_visual, visual_rate,
--   visual_p_value, mean_rank_true, n_no_prediction, n_concepts, result_id
WITH r AS (
    SELECT x.*, row_number() OVER (
        PARTITION BY x.space_a, x.space_b ORDER BY x.created_at DESC, x.result_id DESC) AS rn
    FROM results_recovery AS x
    JOIN spaces AS a ON a.name = x.space_a AND a.content_sha256 = x.space_a_sha256
    JOIN spaces AS b ON b.name = x.space_b AND b.content_sha256 = x.space_b_sha256
), f AS (
    SELECT m.result_id, m.p_fdr, m.sweep_id, row_number() OVER (
        PARTITION BY m.result_id ORDER BY s.created_at DESC, s.sweep_id DESC) AS rn
    FROM sweep_members AS m
    JOIN sweeps AS s ON s.sweep_id = m.sweep_id
    WHERE m.test = 'recovery' AND s.status IN ('complete', 'migrated')
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
    f.p_fdr,
    f.sweep_id,
    r.n_visual,
    r.visual_accuracy AS visual_rate,
    r.visual_p_value,
    r.mean_rank_true,
    r.n_no_prediction,
    r.n_concepts,
    r.result_id
FROM r
LEFT JOIN spaces AS s ON s.name = r.space_a
LEFT JOIN f ON f.result_id = r.result_id AND f.rn = 1
WHERE r.rn = 1
    AND (CAST($model AS VARCHAR) IS NULL OR r.model = CAST($model AS VARCHAR))
    AND (CAST($word_space AS VARCHAR) IS NULL OR r.space_b = CAST($word_space AS VARCHAR))
ORDER BY word_space, r.model, s.depth_index
