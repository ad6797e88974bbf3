-- name: layer_curves
-- purpose: 2 vs 2 accuracy and RSA of every layer space against every word space, in depth
--   order, with the permutation-null band (null mean .. 95th percentile) of each test.
--   For each (layer space, word space) the result with the most permutations (then the
--   newest) is kept, the rule the layer_curves view uses; with the default similarity,
--   distance and method the rows are exactly the view's rows.
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: similarity VARCHAR = 'pearson'  similarity of the similarity matrices
-- param: distance VARCHAR = 'pearson'  distance of the 2 vs 2 test
-- param: rsa_method VARCHAR = 'spearman'  correlation of the RSA
-- columns: model, layer, depth_index, relative_depth, word_space, is_random, accuracy_2v2,
--   p_2v2, p_fdr_2v2, null_mean_2v2, null_q95_2v2, rho_rsa, p_rsa, p_fdr_rsa, null_mean_rsa,
--   null_q95_rsa, n_concepts, n_permutations, space
WITH t AS (
    SELECT *, row_number() OVER (
        PARTITION BY space_a, space_b
        ORDER BY n_permutations DESC, created_at DESC, result_id DESC) AS rn
    FROM results_2v2
    WHERE similarity = CAST($similarity AS VARCHAR) AND distance = CAST($distance AS VARCHAR)
), r AS (
    SELECT *, row_number() OVER (
        PARTITION BY space_a, space_b
        ORDER BY n_permutations DESC, created_at DESC, result_id DESC) AS rn
    FROM results_rsa
    WHERE similarity = CAST($similarity AS VARCHAR) AND method = CAST($rsa_method AS VARCHAR)
)
SELECT
    s.model,
    s.layer,
    s.depth_index,
    s.relative_depth,
    t.space_b AS word_space,
    s.model LIKE '%-random' AS is_random,
    t.accuracy AS accuracy_2v2,
    t.p_value AS p_2v2,
    t.p_fdr AS p_fdr_2v2,
    t.null_mean AS null_mean_2v2,
    t.null_q95 AS null_q95_2v2,
    r.rho AS rho_rsa,
    r.p_value AS p_rsa,
    r.p_fdr AS p_fdr_rsa,
    r.null_mean AS null_mean_rsa,
    r.null_q95 AS null_q95_rsa,
    t.n_concepts,
    t.n_permutations,
    s.name AS space
FROM spaces AS s
JOIN t ON t.space_a = s.name AND t.rn = 1
LEFT JOIN r ON r.space_a = s.name AND r.space_b = t.space_b AND r.rn = 1
WHERE s.kind = 'layer'
    AND (CAST($model AS VARCHAR) IS NULL OR s.model = CAST($model AS VARCHAR))
    AND (CAST($word_space AS VARCHAR) IS NULL OR t.space_b = CAST($word_space AS VARCHAR))
ORDER BY word_space, s.model, s.depth_index
